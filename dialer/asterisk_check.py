"""`dialer asterisk check-config DIR`: an Asterisk config folder checked against the dialer config."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from dialer.asterisk_conf import (
    ERROR,
    SAMPLE_NUMBER,
    At,
    ConfFile,
    Context,
    IpAddress,
    Problem,
    Section,
    Step,
    build_dialplan,
    find_extension,
    flow_steps,
    read_conf,
)
from dialer.asterisk_names import (
    ACTION_CLASSES,
    AGENT_CONTEXT,
    AGENT_USER_PROFILE,
    AGI_DEFAULT_GLOBAL,
    CHANNEL_VARIABLES,
    CONFERENCE_BRIDGE_PROFILE,
    CONNECT_SCRIPT,
    DEBTOR_USER_PROFILE,
    DIALER_SET_VARIABLES,
    EVENT_CLASSES,
    FASTAGI_DEFAULT_PORT,
    MANAGER_CHANNEL_VARIABLES,
    NAILED_CONTEXTS,
    NAILED_VARIABLES,
    ChannelVariable,
    SetBy,
)
from dialer.config import AmiServerConfig, Config, DialingConfig, load_config

# ---------------------------------------------------------------- channels


@dataclass(frozen=True)
class Target:
    """Where a channel leads: a Local channel's context and extension, or a PJSIP endpoint."""

    tech: str  # "local", "pjsip", or another (not checked)
    name: str  # Local: the context; PJSIP: the endpoint
    exten: str = ""


def channel_target(channel: str) -> Target:
    """`Local/exten@context[/n]`, `PJSIP/endpoint`, `PJSIP/user@endpoint[/uri]`; the channel
    template is tried with a sample number."""
    with contextlib.suppress(KeyError, IndexError, ValueError):  # not a template: as it is
        channel = channel.format(number=SAMPLE_NUMBER, e164=f"+{SAMPLE_NUMBER}")
    tech, _, resource = channel.partition("/")
    if tech.lower() == "local":
        exten, _, context = resource.partition("@")
        return Target("local", context.partition("/")[0] or "default", exten)
    if tech.lower() == "pjsip":
        return Target("pjsip", resource.partition("/")[0].rpartition("@")[2])
    return Target(tech.lower(), resource)


def _channels(config: Config) -> list[tuple[str, str, bool]]:
    """(channel, what it is, is the trunk) for the channel template and every agent."""
    template = config.dialing.channel_template
    return [(template, f"dialing.channel_template {template!r}", True)] + [
        (a.channel, f"agent {a.id}'s channel {a.channel!r}", False) for a in config.agents
    ]


# ---------------------------------------------------------------- extensions.conf


def _check_extension(
    contexts: dict[str, Context], context: str, exten: str, priority: int, why: str
) -> list[Problem]:
    if context not in contexts:
        return [At("extensions.conf").error(f"no [{context}] context, {why}: add it")]
    found = find_extension(contexts, context, exten)
    if found is None:
        return [
            contexts[context].at.error(
                f"no extension matches {exten!r}, {why}: add `exten => {exten},1,...` or a pattern"
            )
        ]
    where, name = found
    steps = [s for s in where.steps if s.exten == name]
    if not any(s.priority == priority for s in steps):
        return [
            At(steps[0].file, steps[0].line, where.name).error(
                f"{exten!r} runs extension {name!r}, which has no priority {priority}, {why}"
            )
        ]
    return []


def check_dialplan(conf: ConfFile, config: Config) -> list[Problem]:
    contexts, problems = build_dialplan(conf)
    dialing = config.dialing
    why = "where the dialer's Originate lands (dialing.context, .exten, .priority)"
    problems += _check_extension(contexts, dialing.context, dialing.exten, dialing.priority, why)
    for channel, what, _ in _channels(config):
        target = channel_target(channel)
        if target.tech == "local":
            why = f"which {what} dials"
            problems += _check_extension(contexts, target.name, target.exten, 1, why)
    if dialing.context in contexts:
        ctx = contexts[dialing.context]
        steps = flow_steps(contexts, dialing.context)
        problems += _check_agi(conf, ctx, steps, config)
        variables = CHANNEL_VARIABLES + tuple(v for v in NAILED_VARIABLES if not v.context)
        problems += _check_variables(ctx, steps, config, variables)
    problems += _check_nailed_contexts(contexts, config)
    return problems


def _check_nailed_contexts(contexts: dict[str, Context], config: Config) -> list[Problem]:
    problems = []
    for name, why in NAILED_CONTEXTS.items():
        problems += _check_extension(contexts, name, "s", 1, why)
        if name in contexts:
            variables = tuple(v for v in NAILED_VARIABLES if v.context == name)
            steps = flow_steps(contexts, name)
            problems += _check_variables(contexts[name], steps, config, variables)
    return problems


def _agi_address(url: str) -> tuple[str, int] | None:
    match = re.match(r"h?agis?://(\[[^\]]+\]|[^/:]+)(?::(\d+))?", url.strip())
    if match is None:
        return None
    return match[1].strip("[]"), int(match[2] or FASTAGI_DEFAULT_PORT)


def _check_agi(conf: ConfFile, ctx: Context, steps: list[Step], config: Config) -> list[Problem]:
    """dialer-connect runs AGI(${DIALER_AGI}/connect...); DIALER_AGI_DEFAULT is this dialer."""
    ours = (config.agi.advertise_host, config.agi.port)
    url_ours = f"agi://{ours[0]}:{ours[1]}"
    listen = f"{url_ours} (agi.advertise_host, agi.port)"
    script = f"${{DIALER_AGI}}/{CONNECT_SCRIPT}"
    problems = []
    calls = [s for s in steps if s.app.lower() == "agi"]
    if not calls:
        problems.append(
            ctx.at.error(f"never runs AGI({script}?...): answered calls never reach the dialer")
        )
    for step in calls:
        at = At(step.file, step.line, ctx.name)
        url = step.args.partition(",")[0].strip()
        if url.startswith("${DIALER_AGI}"):
            if not url.removeprefix("${DIALER_AGI}").startswith(f"/{CONNECT_SCRIPT}"):
                path = url.partition("?")[0]
                problems.append(at.error(f"AGI runs {path}; the dialer serves {script} only"))
            continue
        fixed = (
            f"AGI calls a fixed address, not the {script} each call carries (this dialer is "
            f"{listen}): use {script}"
        )
        problems.append(at.warning(fixed) if _agi_address(url) == ours else at.error(fixed))
    globals_ = conf.first("globals")
    default = globals_.entry(AGI_DEFAULT_GLOBAL.lower()) if globals_ else None
    if default is None:
        if any(f"${{{AGI_DEFAULT_GLOBAL}}}" in s.args for s in steps):
            problems.append(
                At(conf.name, None, "globals").warning(
                    f"{AGI_DEFAULT_GLOBAL} is used but never set: set it to {url_ours}"
                )
            )
    elif _agi_address(default.value) != ours and config.agi.port != 0:  # 0: a port chosen at start
        problems.append(
            At(default.file, default.line, "globals").warning(
                f"{AGI_DEFAULT_GLOBAL} = {default.value} is not this dialer's {listen}; calls "
                f"carry DIALER_AGI, so only calls made by hand use it: set it to {url_ours}"
            )
        )
    return problems


def _check_variables(
    ctx: Context, steps: list[Step], config: Config, variables: tuple[ChannelVariable, ...]
) -> list[Problem]:
    """Every channel variable the dialer sets is read; the applications it relies on run."""
    read = set(re.findall(r"\$\{(\w+)[}:]", "\n".join(f"{s.app}({s.args})" for s in steps)))
    apps = {s.app.lower() for s in steps}
    asked = {"AMD": "use_amd", "MixMonitor": "record"}  # application -> the dialing setting
    problems = []
    for var in variables:
        runs = var.application.lower() in apps
        if var.set_by is not SetBy.ASTERISK:
            if var.name not in read:
                message = f"never reads ${{{var.name}}}, set by {var.set_by.value}"
                problems.append(
                    ctx.at.error(message) if var.drives_dialplan else ctx.at.warning(message)
                )
        elif not runs and getattr(config.dialing, asked.get(var.application, ""), False):
            setting = asked[var.application]
            problems.append(
                ctx.at.error(
                    f"never runs {var.application}(), which dialing.{setting} = true asks for "
                    f"(it sets {var.name})"
                )
            )
        elif var.drives_dialplan and runs and var.name not in read:
            problems.append(ctx.at.error(f"runs {var.application}() but never reads {var.name}"))
    return problems


def check_variable_table(folder: Path) -> list[Problem]:
    """extensions.conf's header comment lists exactly the channel variables the dialer sets."""
    try:
        lines = (folder / "extensions.conf").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []  # the parser says so
    listed: dict[str, int] = {}
    in_table = False
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("["):
            break
        in_table = in_table or (line.startswith(";") and "variables" in line.lower())
        names = re.match(r";\s+([A-Z][A-Z0-9_]+(?:\s*,\s*[A-Z][A-Z0-9_]+)*)(?:\s{2,}|\s*$)", line)
        if in_table and names:
            listed.update((name.strip(), number) for name in names[1].split(","))
    problems = []
    missing = [name for name in DIALER_SET_VARIABLES if name not in listed]
    if missing:
        problems.append(
            At("extensions.conf").warning(
                f"the header's table of channel variables lacks {', '.join(missing)}: list them "
                "with what they mean"
            )
        )
    known = {v.name for v in CHANNEL_VARIABLES + NAILED_VARIABLES}
    for name, number in listed.items():
        if name not in known:
            problems.append(
                At("extensions.conf", number).warning(
                    f"the header lists {name}, which the dialer neither sets nor reads: drop it "
                    "(or name it in dialer/asterisk_names.py)"
                )
            )
    return problems


# ---------------------------------------------------------------- manager.conf


def _ip(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
    except ValueError:
        return None


def _is_yes(value: str | None) -> bool:
    return (value or "").strip().lower() in ("yes", "true", "y", "t", "1", "on")


def _classes(user: Section, key: str) -> set[str]:
    return {c.strip().lower() for c in (user.get(key) or "").split(",") if c.strip()}


def check_manager(conf: ConfFile, config: Config) -> list[Problem]:
    general = conf.first("general") or Section("general", conf.name, 0)
    problems = []
    if not _is_yes(general.get("enabled")):
        problems.append(general.at_key("enabled").error("AMI is off: set `enabled = yes`"))
    for index, server in enumerate(config.ami.servers):
        problems += _check_manager_server(conf, general, f"ami.servers[{index}]", server, config)
    return problems


def _check_manager_server(
    conf: ConfFile, general: Section, who: str, server: AmiServerConfig, config: Config
) -> list[Problem]:
    who = f"{who} ({server.name})"
    problems = []
    port = general.get("port") or "5038"
    if port != str(server.port):
        problems.append(
            general.at_key("port").error(
                f"port = {port}, but {who} connects to port {server.port}: make them the same"
            )
        )
    bind, host = _ip(general.get("bindaddr") or "0.0.0.0"), _ip(server.host)
    if bind is not None and not bind.is_unspecified and host is not None and host != bind:
        problems.append(
            general.at_key("bindaddr").error(
                f"bindaddr = {bind}, but {who} connects to {server.host}: bind to "
                f"{server.host} (or to 0.0.0.0 and narrow permit =)"
            )
        )
    user = conf.first(server.username) if server.username != "general" else None
    if user is None:
        return [
            *problems,
            At(conf.name).error(
                f"no [{server.username}] user, which {who} logs in as: add it "
                "(asterisk-conf/manager.conf)"
            ),
        ]
    secret = user.get("secret")  # compared, never shown
    if not secret:
        problems.append(user.at.error(f"no secret: set the one of {who}"))
    elif "change-me" in secret.lower():
        problems.append(
            user.at_key("secret").warning(
                "secret is the shipped, public placeholder: choose a new one and give the "
                "dialer the same (ami.servers[].secret or DIALER_AMI_SECRET)"
            )
        )
    elif secret != server.secret.reveal():
        problems.append(
            user.at_key("secret").error(
                f"secret differs from the one of {who}: make them the same "
                "(ami.servers[].secret or DIALER_AMI_SECRET)"
            )
        )
    problems += _check_acl(user, server, config, who)
    write, read = _classes(user, "write"), _classes(user, "read")
    for action, classes in ACTION_CLASSES.items():
        if "all" not in write and not write & set(classes):
            problems.append(
                user.at_key("write").error(f"write = does not allow {action}: add {classes[0]}")
            )
    channelvars = {v.strip() for v in (general.get("channelvars") or "").split(",")}
    missing = [v for v in MANAGER_CHANNEL_VARIABLES if v not in channelvars]
    if missing:
        problems.append(
            general.at_key("channelvars").warning(
                f"channelvars lacks {', '.join(missing)}: the events of an agent's nailed-up "
                f"phone do not name the agent (ChanVariable); add "
                f"`channelvars = {', '.join(MANAGER_CHANNEL_VARIABLES)}` to [general]"
            )
        )
    for cls in dict.fromkeys(EVENT_CLASSES.values()):
        if "all" not in read and cls not in read:
            events = ", ".join(e for e, c in EVENT_CLASSES.items() if c == cls)
            problems.append(
                user.at_key("read").error(f"read = lacks {cls}: the dialer never sees {events}")
            )
    return problems


def _check_acl(user: Section, server: AmiServerConfig, config: Config, who: str) -> list[Problem]:
    """deny/permit as Asterisk applies them: every rule that matches decides anew."""
    host = _ip(server.host)
    source = host if host is not None and host.is_loopback else _ip(config.agi.advertise_host)
    allowed = True
    for rule in (e for e in user.entries if e.key in ("permit", "deny", "acl")):
        at = At(rule.file, rule.line, user.name)
        if rule.key == "acl":
            return [at.warning(f"acl = {rule.value} (a named ACL of acl.conf) is not checked")]
        for item in (i.strip() for i in rule.value.split(",")):
            try:
                network = ipaddress.ip_network(item.lstrip("!"), strict=False)
            except ValueError:
                return [at.error(f"{rule.key} = {item}: not an address/mask")]
            if source is not None and (source in network) != item.startswith("!"):
                allowed = rule.key == "permit"
    if allowed or source is None:
        return []
    return [
        user.at.error(
            f"deny/permit refuse {source}, where {who} connects from: add "
            f"`permit = {source}/{source.max_prefixlen}` after the deny"
        )
    ]


# ---------------------------------------------------------------- pjsip.conf, pjsip_wizard.conf


@dataclass
class Pjsip:
    """pjsip.conf (endpoints, aors, transports) and pjsip_wizard.conf (wizards only)."""

    conf: ConfFile
    wizards: ConfFile

    def endpoint(self, name: str) -> Section | None:
        found = [s for s in self.conf.typed("endpoint") if s.name == name]
        found += [s for s in self.wizards.typed("wizard") if s.name == name]
        return found[0] if found else None

    def aor(self, name: str) -> Section | None:
        return next((s for s in self.conf.typed("aor") if s.name == name), None)


def read_pjsip(folder: Path) -> Pjsip:
    wizards = ConfFile("pjsip_wizard.conf")
    if (folder / wizards.name).exists():
        wizards = read_conf(folder, wizards.name)
    return Pjsip(read_conf(folder, "pjsip.conf"), wizards)


def check_pjsip(pjsip: Pjsip, config: Config) -> list[Problem]:
    problems = pjsip.conf.problems + pjsip.wizards.problems
    for section in pjsip.conf.typed("wizard"):
        problems.append(
            section.at.error("type = wizard is read from pjsip_wizard.conf only: move it there")
        )
    for section in pjsip.wizards.objects():
        if section.type != "wizard":
            problems.append(
                section.at.warning(
                    f"type = {section.type or '(none)'} is ignored here: only wizards are read from pjsip_wizard.conf"
                )
            )
    transports = {s.name for s in pjsip.conf.typed("transport")}
    for channel, what, trunk in _channels(config):
        target = channel_target(channel)
        if target.tech != "pjsip":
            continue
        endpoint = pjsip.endpoint(target.name)
        if endpoint is None:
            hint = (
                "a type = wizard section to pjsip_wizard.conf (pjsip-trunk-*.conf.sample)"
                if trunk
                else "endpoint, auth and aor sections to pjsip.conf (its agent templates)"
            )
            problems.append(
                At(pjsip.conf.name).error(
                    f"no endpoint {target.name!r}, which {what} dials: add {hint}"
                )
            )
            continue
        transport = endpoint.get("transport")
        if transport and transport not in transports:
            problems.append(
                endpoint.at_key("transport").error(
                    f"transport = {transport}: no such type = transport section in pjsip.conf"
                )
            )
        if endpoint.type == "wizard":
            if trunk and not (endpoint.get("remote_hosts") or endpoint.get("aor/contact")):
                problems.append(endpoint.at.error("no remote_hosts: calls to the trunk go nowhere"))
            continue
        problems += _check_aors(pjsip, endpoint, trunk)
    return problems


def _check_aors(pjsip: Pjsip, endpoint: Section, trunk: bool) -> list[Problem]:
    aors = [a.strip() for a in (endpoint.get("aors") or "").split(",") if a.strip()]
    if not aors:
        return [endpoint.at.error("no aors =: Asterisk has no address to send its calls to")]
    problems = []
    for name in aors:
        aor = pjsip.aor(name)
        if aor is None:
            problems.append(
                endpoint.at_key("aors").error(f"aors = {name}: no such type = aor section")
            )
        elif aor.get("contact"):
            continue
        elif trunk:
            problems.append(
                aor.at.warning("no contact =: calls go nowhere unless the carrier registers")
            )
        elif (aor.get("max_contacts") or "0") == "0":
            problems.append(
                aor.at.error(
                    "no contact and max_contacts = 0: the phone cannot register; set max_contacts = 1"
                )
            )
    return problems


# ---------------------------------------------------------------- confbridge.conf

# The context whose ConfBridge() seats each party ("": dialing.context), the user profile the
# shipped folder names there, the flag that profile must have, and what breaks without it.
_CONFERENCE_USERS = {
    AGENT_CONTEXT: (
        AGENT_USER_PROFILE,
        "marked",
        "debtors are never put out of the conference when the agent's phone drops",
    ),
    "": (
        DEBTOR_USER_PROFILE,
        "end_marked",
        "a debtor stays on, alone, when the agent's phone drops",
    ),
}
# Built into app_confbridge: these exist even when confbridge.conf does not name them.
_BUILTIN_PROFILES = {"bridge": "default_bridge", "user": "default_user"}


ConferenceStep = tuple[str, str, Step]  # the key of _CONFERENCE_USERS, the context, the step


def conference_steps(contexts: dict[str, Context], config: Config) -> list[ConferenceStep]:
    """Every ConfBridge() the nailed-up agent flows run."""
    found = []
    for where in _CONFERENCE_USERS:
        context = where or config.dialing.context
        steps = flow_steps(contexts, context)
        found += [(where, context, s) for s in steps if s.app.lower() == "confbridge"]
    return found


def _profile(conf: ConfFile, name: str, kind: str, at: At, shipped: str) -> list[Problem]:
    if name == _BUILTIN_PROFILES[kind] or any(s.type == kind for s in conf.objects(name)):
        return []
    return [
        at.error(
            f"ConfBridge() names {kind} profile {name}, which confbridge.conf lacks: add "
            f"[{name}] with type = {kind} (asterisk-conf/confbridge.conf has [{shipped}])"
        )
    ]


def check_confbridge(conf: ConfFile, steps: list[ConferenceStep]) -> list[Problem]:
    """The profiles each ConfBridge() names exist; the agent's is marked, the debtor's
    end_marked (what keeps a debtor from staying alone in a conference)."""
    problems: list[Problem] = []
    for where, context, step in steps:
        shipped_user, flag, why = _CONFERENCE_USERS[where]
        at = At(step.file, step.line, context)
        args = [a.strip() for a in step.args.split(",")]
        bridge = args[1] if len(args) > 1 and args[1] else _BUILTIN_PROFILES["bridge"]
        user = args[2] if len(args) > 2 and args[2] else _BUILTIN_PROFILES["user"]
        problems += _profile(conf, bridge, "bridge", at, CONFERENCE_BRIDGE_PROFILE)
        missing = _profile(conf, user, "user", at, shipped_user)
        if missing:
            problems += missing
            continue
        section = next((s for s in conf.objects(user) if s.type == "user"), None)
        if section is not None and _is_yes(section.get(flag)):
            continue
        if section is None or user == _BUILTIN_PROFILES["user"]:
            # Asterisk's default profile: marking it would mark every conference's users.
            message = (
                f"ConfBridge() joins with {user}, which is not `{flag} = yes`, so {why}: "
                f"name a user profile that is (asterisk-conf has [{shipped_user}])"
            )
            problems.append(at.error(message))
        else:
            message = f"user profile {user} lacks `{flag} = yes`, so {why}: set it"
            problems.append(section.at_key(flag).error(message))
    return problems


# ---------------------------------------------------------------- modules.conf, the config


_APP_MODULES = {
    "agi": "res_agi",
    "amd": "app_amd",
    "mixmonitor": "app_mixmonitor",
    "dial": "app_dial",
    "playback": "app_playback",
    "confbridge": "app_confbridge",
    "chanspy": "app_chanspy",
}


def check_modules(conf: ConfFile, needed: dict[str, str]) -> list[Problem]:
    """autoload = no: every needed module is loaded; autoload = yes: none is noload'ed."""
    section = conf.first("modules")
    if section is None:
        return [At(conf.name).error("no [modules] section")]
    loading = ("load", "require", "preload", "preload-require")
    loaded = {e.value.removesuffix(".so") for e in section.entries if e.key in loading}
    refused = {e.value.removesuffix(".so"): e for e in section.entries if e.key == "noload"}
    autoload = _is_yes(section.get("autoload") or "yes")
    problems = []
    for module, why in needed.items():
        if module in refused:
            at = At(refused[module].file, refused[module].line, section.name)
            problems.append(at.error(f"noload = {module}.so, needed for {why}: remove the line"))
        elif not autoload and module not in loaded:
            problems.append(
                section.at.error(
                    f"{module}.so, needed for {why}, is not loaded: add `load = {module}.so`"
                )
            )
    return problems


def check_dialer_config(config: Config, config_name: str) -> list[Problem]:
    """What the dialer config alone tells: a placeholder caller ID, the recording folder."""
    at = At(config_name, None, "dialing")
    problems = []
    if config.dialing.caller_id == DialingConfig().caller_id:
        problems.append(
            at.warning(
                f"caller_id is the placeholder {config.dialing.caller_id}: carriers refuse or "
                "flag it; set the number you call from"
            )
        )
    folder = config.dialing.recording_dir
    # Asterisk runs on this machine when every AMI server is on loopback.
    here = all((ip := _ip(s.host)) is not None and ip.is_loopback for s in config.ami.servers)
    if folder and Path(folder).is_absolute() and here:
        if not Path(folder).is_dir():
            problems.append(
                at.error(
                    f"recording_dir {folder} does not exist: create it, writable by the asterisk user"
                )
            )
        elif not os.access(folder, os.W_OK | os.X_OK):
            problems.append(
                at.error(
                    f"recording_dir {folder} is not writable by this user (run the check as the asterisk user)"
                )
            )
    return problems


def check_folder(folder: Path, config: Config) -> list[Problem]:
    """Every check of an Asterisk config folder against the dialer config."""
    if not folder.is_dir():
        return [At(str(folder)).error("not a folder")]
    extensions = read_conf(folder, "extensions.conf")
    manager = read_conf(folder, "manager.conf")
    problems = extensions.problems + manager.problems
    contexts, _ = build_dialplan(extensions)
    if extensions.sections:
        problems += check_dialplan(extensions, config)
        problems += check_variable_table(folder)
    if manager.sections:
        problems += check_manager(manager, config)
    needed = {"pbx_config": "extensions.conf"}
    for context in (config.dialing.context, *NAILED_CONTEXTS):
        for step in flow_steps(contexts, context):
            if step.app.lower() in _APP_MODULES:
                needed.setdefault(_APP_MODULES[step.app.lower()], f"{step.app}()")
    conferences = conference_steps(contexts, config)
    if conferences:
        needed["bridge_softmix"] = "ConfBridge()'s mixing"
        confbridge = read_conf(folder, "confbridge.conf")
        problems += confbridge.problems
        problems += check_confbridge(confbridge, conferences) if confbridge.sections else []
    if any(channel_target(c).tech == "pjsip" for c, _, _ in _channels(config)):
        pjsip = read_pjsip(folder)
        problems += check_pjsip(pjsip, config)
        for module in ("res_pjsip", "res_pjsip_session", "chan_pjsip"):
            needed[module] = "PJSIP channels"
        if pjsip.wizards.typed("wizard"):
            needed["res_pjsip_config_wizard"] = "pjsip_wizard.conf"
        registers = [
            w for w in pjsip.wizards.typed("wizard") if _is_yes(w.get("sends_registrations"))
        ]
        if registers or pjsip.conf.typed("registration"):
            needed["res_pjsip_outbound_registration"] = "the trunk's registration"
    if config.dialing.use_amd and not (folder / "amd.conf").exists():
        problems.append(At("amd.conf").warning("not found: AMD() runs with built-in defaults"))
    if (folder / "modules.conf").exists():
        modules = read_conf(folder, "modules.conf")
        problems += modules.problems + (check_modules(modules, needed) if modules.sections else [])
    return list(dict.fromkeys(problems))  # several servers, one folder: say each thing once


# ---------------------------------------------------------------- the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="asterisk_command", required=True, metavar="ACTION")
    check = sub.add_parser(
        "check-config",
        help="check an Asterisk config folder against the dialer config",
        description="Check an Asterisk config folder against the dialer config: one line per "
        "problem, exit status 1 on any error.",
    )
    check.add_argument("folder", type=Path, metavar="DIR", help="e.g. /etc/asterisk")
    check.add_argument("--config", type=Path, help="the dialer's TOML config file")
    check.add_argument("--json", action="store_true", help="one JSON object with every problem")
    check.add_argument("--strict", action="store_true", help="warnings fail too")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    problems = check_dialer_config(config, str(args.config or "dialer config"))
    problems += check_folder(args.folder, config)
    errors = sum(p.severity == ERROR for p in problems)
    warnings = len(problems) - errors
    failed = errors > 0 or (args.strict and warnings > 0)
    if args.json:
        report = {"ok": not failed, "errors": errors, "warnings": warnings}
        print(json.dumps({**report, "problems": [asdict(p) for p in problems]}))
    else:
        for problem in problems:
            print(problem)
        verdict = "FAILED" if failed else "ok"
        print(f"{verdict}: {args.folder}: {errors} error(s), {warnings} warning(s)")
    return 1 if failed else 0
