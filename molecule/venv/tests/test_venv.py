"""Venv mode on system Apache: the application and the sidecar run in the
application's virtual environment, and Apache loads the mod_wsgi pip built
there in place of Debian's; switching to Debian's mod_wsgi and back is clean
both ways."""

import pytest
from conftest import ROLE, Probe, converge, enabled_apache_config, scenario_hosts, wsgi_daemon_groups

VENV = "/srv/app/venv"
# Names as pip normalises them (PEP 503).
PINNED = {
    "aiohttp": "3.14.5",
    "prometheus-client": "0.26.0",
    "mod-wsgi": "6.1.1",
    "markupsafe": "3.0.3",
}
PYPI_LOAD = "/etc/apache2/mods-available/mod_wsgi_ws_sidecar_wsgi.load"


def loaded_wsgi_modules(host) -> list[str]:
    """The .so files of every LoadModule wsgi_module Apache reads."""
    config = enabled_apache_config(host)
    return [
        line.split()[2].strip('"')
        for line in config.splitlines()
        if line.startswith("LoadModule wsgi_module")
    ]


def sidecar_pid(host) -> str:
    return host.check_output("pgrep -u www-data -f '^.wsgi:metrics-sid'")


def test_pinned_packages_are_in_the_venv(host):
    frozen = host.check_output(f"{VENV}/bin/pip freeze").splitlines()
    pairs = (line.split("==", 1) for line in frozen if "==" in line)
    installed = {name.lower().replace("_", "-"): version for name, version in pairs}
    for name, version in PINNED.items():
        assert installed.get(name) == version, installed


@pytest.mark.parametrize("package", ["python3-aiohttp", "python3-prometheus-client"])
def test_debians_python_packages_are_not_installed(host, package):
    assert not host.package(package).is_installed


def test_apache_loads_the_venvs_mod_wsgi_only(host):
    (module,) = loaded_wsgi_modules(host)
    assert module.startswith(f"{VENV}/lib/python3."), module
    assert host.file(module).exists
    assert not host.file("/etc/apache2/mods-enabled/wsgi.load").exists


def test_both_daemon_groups_run_from_the_venv(host):
    groups = wsgi_daemon_groups(enabled_apache_config(host))
    assert set(groups) == {"wsgi-app", "metrics-sidecar"}
    for options in groups.values():
        assert f"python-home={VENV}" in options.split()


def test_sidecar_runs_the_venvs_aiohttp(host):
    # aiohttp's compiled parts are mapped from the venv, not from Debian.
    maps = host.file(f"/proc/{sidecar_pid(host)}/maps").content_string
    assert f"{VENV}/lib/python3." in maps
    assert "site-packages/aiohttp/" in maps
    assert "/usr/lib/python3/dist-packages/aiohttp" not in maps


@pytest.fixture(scope="module")
def switched_to_debians_mod_wsgi():
    """Every host converged with Debian's mod_wsgi, what each then served,
    the changes of converging back to PyPI's, and a check-mode run after."""
    hosts = scenario_hosts()
    converge({"mod_wsgi_ws_sidecar_mod_wsgi_source": "distro"})
    seen = {host.backend.host: {
        "modules": loaded_wsgi_modules(host),
        "pypi_load": host.file(PYPI_LOAD).exists,
        "app": Probe(host).http("/"),
        "ws": Probe(host).ws_eventually("/metrics/ws", within=20),
    } for host in hosts}
    back = converge()
    return seen, back, converge(check=True)
    

def test_switching_to_debians_mod_wsgi_and_back(host, switched_to_debians_mod_wsgi):
    seen, back, recheck = switched_to_debians_mod_wsgi
    on_debians = seen[host.backend.host]
    assert on_debians["modules"] == ["/usr/lib/apache2/modules/mod_wsgi.so"]
    assert not on_debians["pypi_load"]
    # Debian's mod_wsgi still runs the application in the venv (python-home).
    assert f" in {VENV}\n" in on_debians["app"]["body"]
    assert on_debians["ws"]["frames"][0]["data"]["type"] == "snapshot"
    # Back on PyPI's: the same single module as before, and a quiet re-run.
    assert f"{ROLE} : Restart Apache (mod_wsgi_ws_sidecar)" in back[host.backend.host]
    test_apache_loads_the_venvs_mod_wsgi_only(host)
    assert recheck[host.backend.host] == []
