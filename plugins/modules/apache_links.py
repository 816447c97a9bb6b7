"""Enables and disables Debian Apache's modules, configuration snippets and
sites in one round trip, with Debian's own a2enmod/a2dismod, a2enconf/
a2disconf and a2ensite/a2dissite, each run only when its link is not yet as
asked. Each command run is reported as a command task reports it, so the
rollback rule (plugins/filter/rollback.py) can undo it."""

from __future__ import annotations

DOCUMENTATION = r"""
module: apache_links
short_description: Enable and disable Debian Apache's modules, conf snippets and sites at once
description:
  - For each kind (C(mods), C(conf), C(sites)), the names in I(enable) get
    their link in C(KIND-enabled/) and those in I(disable) lose it, by the
    kind's Debian helper, run once per kind and direction with every name
    that needs it (a2enmod also enables what a module depends on).
  - Disabling runs first, so that one mod_wsgi is swapped for another in one call.
  - A link whose target is gone (a module file the role removed) is unlinked directly.
  - Supports check mode.
options:
  apache_dir:
    description: Apache's configuration directory.
    type: path
    default: /etc/apache2
  enable:
    description: Kind -> names to enable.
    type: dict
    default: {}
  disable:
    description: Kind -> names to disable.
    type: dict
    default: {}
  restart:
    description: Names whose change needs a full restart of Apache rather than a reload.
    type: list
    elements: raw
    default: []
notes:
  - Lists of names may nest (a list templated into a list); they are flattened.
author: mod_wsgi_ws_sidecar maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Enable mod_proxy_wstunnel and a site, disable Debian's default site
  mod_wsgi_ws_sidecar.apache.apache_links:
    enable:
      mods: [proxy, proxy_http, proxy_wstunnel]
      sites: [my-app]
    disable:
      sites: ["000-default"]
    restart: [proxy_wstunnel]
  register: links

- name: Restart Apache when a module changed, reload otherwise
  ansible.builtin.service:
    name: apache2
    state: "{{ 'restarted' if links.results | selectattr('restart') | list else 'reloaded' }}"
  when: links is changed
"""

RETURN = r"""
results:
  description: >-
    One per command that had work: cmd (a list), changed, and restart when
    it touched a name in I(restart).
  type: list
  returned: always
"""


import os

from ansible.module_utils.basic import AnsibleModule

# Kind -> (the enabled link's suffix, enabling helper, disabling helper).
KINDS = {
    "mods": (".load", "a2enmod", "a2dismod"),
    "conf": (".conf", "a2enconf", "a2disconf"),
    "sites": (".conf", "a2ensite", "a2dissite"),
}


def flat(names: object) -> list[str]:
    """Names from a list that may hold lists."""
    if isinstance(names, (list, tuple)):
        return [name for item in names for name in flat(item)]
    return [] if names is None else [str(names)]


def link_path(apache_dir: str, kind: str, name: str) -> str:
    return os.path.join(apache_dir, f"{kind}-enabled", name + KINDS[kind][0])


def plan_commands(apache_dir: str, enable: dict, disable: dict, restart: set) -> list[dict]:
    """The commands to run, disabling first: each with its names still to change."""
    unknown = (set(enable) | set(disable)) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}; expected {sorted(KINDS)}")
    commands = []
    for direction, wanted in (("disable", disable), ("enable", enable)):
        for kind, (_suffix, enabler, disabler) in KINDS.items():
            names = []
            for name in flat(wanted.get(kind)):
                present = os.path.lexists(link_path(apache_dir, kind, name))
                if present == (direction == "disable") and name not in names:
                    names.append(name)
            if names:
                helper = disabler if direction == "disable" else enabler
                commands.append(
                    {
                        "cmd": [helper, "-q", *names],
                        "kind": kind,
                        "names": names,
                        "changed": False,
                        "restart": bool(restart & set(names)),
                    }
                )
    return commands


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "apache_dir": {"type": "path", "default": "/etc/apache2"},
            "enable": {"type": "dict", "default": {}},
            "disable": {"type": "dict", "default": {}},
            "restart": {"type": "list", "elements": "raw", "default": []},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        commands = plan_commands(
            params["apache_dir"], params["enable"], params["disable"], set(flat(params["restart"]))
        )
    except ValueError as error:
        module.fail_json(msg=str(error))
    for command in commands:
        command["changed"] = True
        if not module.check_mode:
            run(module, command, commands)
    module.exit_json(changed=bool(commands), results=commands)


def run(module: AnsibleModule, command: dict, commands: list[dict]) -> None:
    """Runs one planned command; if it fails, so does the module, with every
    command's result (those not run yet unchanged)."""
    apache_dir = module.params["apache_dir"]
    if command["cmd"][0] in ("a2dismod", "a2disconf", "a2dissite"):
        # A link left pointing at nothing: the helpers refuse a name whose
        # file is gone, and rollback could not enable it again either.
        dangling = []
        for name in list(command["names"]):
            link = link_path(apache_dir, command["kind"], name)
            if os.path.islink(link) and not os.path.exists(link):
                os.unlink(link)
                dangling.append(link)
                command["names"].remove(name)
        if dangling:
            command["unlinked"] = dangling
        if not command["names"]:
            command["cmd"] = ["unlink", *dangling]
            return
        command["cmd"] = [command["cmd"][0], "-q", *command["names"]]
    rc, out, err = module.run_command(command["cmd"])
    command.update(rc=rc, stdout=out, stderr=err)
    if rc != 0:
        module.fail_json(
            msg=f"{' '.join(command['cmd'])} failed: {err or out}", changed=True, results=commands
        )


if __name__ == "__main__":
    main()
