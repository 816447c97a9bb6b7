"""What the role puts on the application's python-path: its package
mod_wsgi_ws_sidecar alone, so the application's own modules (one named
`sidecar`, say) are never shadowed, and the publisher imports as
mod_wsgi_ws_sidecar.push, in Apache and outside it (manage.py, a worker)."""

from conftest import converge, scenario_hosts, stage_scripts
from push_tests import PROBE, session_frames

PYTHON_DIR = "/usr/local/lib/mod_wsgi_ws_sidecar/python"
SITE = "/etc/apache2/sites-available/mod_wsgi_ws_sidecar.conf"
USER_DIR = "/opt/mws-test/user-app"
# The application's own module named like a module the role once installed.
IMPORT_CHECK = f"""
import sys
sys.path[:0] = [{PYTHON_DIR!r}, {USER_DIR!r}]
import sidecar
assert sidecar.OWNER == "the application", sidecar.__file__
from mod_wsgi_ws_sidecar import push
assert push.__file__ == {PYTHON_DIR!r} + "/mod_wsgi_ws_sidecar/push.py", push.__file__
print("ok")
"""


def test_the_applications_path_holds_the_package_alone(host):
    assert host.check_output("ls -A %s", PYTHON_DIR).split() == ["mod_wsgi_ws_sidecar"]
    app_group = [
        line for line in host.file(SITE).content_string.splitlines() if "python-path=" in line
    ]
    assert app_group and all(PYTHON_DIR in line for line in app_group), app_group
    # Nothing of the role's is left at the top of its lib directory but the demo.
    lib = host.check_output("ls -A /usr/local/lib/mod_wsgi_ws_sidecar").split()
    assert sorted(lib) == ["demo_app.wsgi", "python"], lib


def test_the_applications_own_module_named_sidecar_still_imports(host):
    host.check_output("mkdir -p %s", USER_DIR)
    host.check_output("printf %s %s > %s/sidecar.py", "%s\n", 'OWNER = "the application"', USER_DIR)
    result = host.run("python3 -c %s", IMPORT_CHECK)
    assert result.rc == 0 and result.stdout.strip() == "ok", result.stderr


# A worker, a cron job or manage.py: the application's user and Python, no
# path of the role's, not even the daemon's working directory.
WORKER = """
from mod_wsgi_ws_sidecar import push
print(push.publish("demo", {"text": "from a worker"}))
"""


def test_a_process_outside_apache_publishes_as_the_application_does(host):
    site = host.check_output("python3 -c %s", "import site; print(site.getsitepackages()[0])")
    pth = host.file(f"{site}/mod_wsgi_ws_sidecar.pth")
    assert pth.content_string == PYTHON_DIR + "\n"
    stage_scripts(host, "push_probe.py")
    ready = "/opt/mws-test/worker-ready"
    run = host.run(
        "rm -f %s; timeout 60 python3 %s session demo --ready %s --frames 2 --timeout 20"
        " & session=$!; timeout 30 sh -c 'until test -e %s; do sleep 0.05; done'"
        " && cd / && runuser -u www-data -- env -i PATH=/usr/bin:/bin python3 -c %s"
        " && wait $session",
        ready,
        PROBE,
        ready,
        ready,
        WORKER,
    )
    assert run.rc == 0, run.stderr
    subscribed, message = session_frames(run.stdout)
    assert subscribed["type"] == "subscribed"
    assert message["data"] == {"text": "from a worker"}
    # The position the worker was told is the one the browser got.
    assert message["id"] in run.stdout.splitlines()


def test_the_modules_an_earlier_release_left_flat_are_removed():
    """A host of a release before the package: its modules sat beside the
    demo application, on the python-path. The next run removes them."""
    lib = "/usr/local/lib/mod_wsgi_ws_sidecar"
    left = ["sidecar.py", "sidecar_metrics.py", "mod_wsgi_ws_sidecar_push.py", "push.js"]
    hosts = scenario_hosts()
    for host in hosts:
        for name in left:
            host.check_output("echo '# earlier release' > %s/%s", lib, name)
    converge()
    for host in hosts:
        assert sorted(host.check_output("ls -A %s", lib).split()) == ["demo_app.wsgi", "python"]
