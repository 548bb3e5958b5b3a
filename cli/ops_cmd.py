"""Operations: `service install`, `config show|path|init`, `backup`, `restore`.

The systemd units are rendered here from templates with this installation's
paths (the python running this command, the effective data dir and socket), so
a venv anywhere works. systemd/ in the repository holds the same units rendered
with example paths, for reading (a test keeps them in sync).
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import pwd
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dgx_music.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, fail, print_json
from dgx_music.cli.daemon_cmd import box_command
from dgx_music.cli.extras import requires_extra
from dgx_music.common import paths
from dgx_music.common.config import OPTIONS, ConfigError, load_settings, render_default_toml

SERVICE = "dgx-music.service"
SOCKET = "dgx-music.socket"
SYSTEM_USER = "dgx-music"
SYSTEM_DATA = "/var/lib/dgx-music"
SYSTEM_CACHE = "/var/cache/dgx-music"
SYSTEM_RUNTIME = "/run/dgx-music"
SYSTEM_CONFIG = "/etc/dgx-music/config.toml"

# ----------------------------------------------------------------------------- units
_COMMON_SERVICE = """\
[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start}
# READY=1 comes after the database check and crash recovery; model loading happens later.
TimeoutStartSec=300
TimeoutStopSec=60
# SIGTERM to the daemon only: it stops its model worker itself; stragglers get SIGKILL.
KillMode=mixed
Restart=on-failure
RestartSec=5
# The daemon sends WATCHDOG=1 from its event loop every WatchdogSec/3.
WatchdogSec=60
# Room for socket clients, HTTP connections (capped by http.max_connections) and the model's files;
# the daemon also keeps http.fd_reserve descriptors free so HTTP can never starve the socket.
LimitNOFILE=65536
Environment=PYTHONUNBUFFERED=1
{environment}
"""

_USER_TEMPLATE = """\
# {unit} (systemd user unit), rendered by `dgx-music service install --user`.
# Enable:  systemctl --user daemon-reload && systemctl --user enable --now dgx-music.socket dgx-music.service
# Survive logout:  loginctl enable-linger {user}
[Unit]
Description=DGX Music daemon (MusicGen model, job queue, track library)
{doc}
{service}
{runtime}
# Hardening that keeps GPU access: no PrivateDevices/DevicePolicy (the CUDA driver needs
# /dev/nvidia*), no MemoryDenyWriteExecute (CUDA, numba and triton JIT-compile code).
{sandbox}
[Install]
WantedBy=default.target
"""

_USER_SANDBOX = """\
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
ReadWritePaths={rw}
PrivateTmp=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RestrictRealtime=yes
SystemCallArchitectures=native
UMask=0077
"""

_SYSTEM_TEMPLATE = """\
# {unit} (systemd system unit), rendered by `dgx-music service install --system`.
# Runs as the system user {sysuser}; members of group {sysuser} may use the socket.
[Unit]
Description=DGX Music daemon (MusicGen model, job queue, track library)
{doc}After=network-online.target nvidia-persistenced.service
Wants=network-online.target

{service}User={sysuser}
Group={sysuser}
{groups}StateDirectory=dgx-music
StateDirectoryMode=0700
CacheDirectory=dgx-music
CacheDirectoryMode=0700
ConfigurationDirectory=dgx-music
RuntimeDirectory=dgx-music
RuntimeDirectoryMode=0750
# Keep /run/dgx-music across restarts: the .socket unit's socket lives there.
RuntimeDirectoryPreserve=yes

# Hardening that keeps GPU access: devices are closed except the NVIDIA ones;
# no MemoryDenyWriteExecute (CUDA, numba and triton JIT-compile code).
{sandbox}
[Install]
WantedBy=multi-user.target
"""

_SYSTEM_SANDBOX = """\
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={rw}
ProtectHome=read-only
PrivateTmp=yes
DevicePolicy=closed
DeviceAllow=/dev/nvidiactl rw
DeviceAllow=/dev/nvidia-uvm rw
DeviceAllow=/dev/nvidia-uvm-tools rw
DeviceAllow=/dev/nvidia-modeset rw
DeviceAllow=char-nvidia-frontend rw
DeviceAllow=char-nvidia-caps rw
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictNamespaces=yes
RestrictRealtime=yes
LockPersonality=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
UMask=0077
"""

_SOCKET_TEMPLATE = """\
# {unit}: socket activation for dgx-music.service; rendered by `dgx-music service install --{mode}`.
# systemd holds the socket, so clients queue up (instead of being refused) while the daemon restarts.
[Unit]
Description=DGX Music daemon socket

[Socket]
ListenStream={socket}
FileDescriptorName=daemon
SocketMode={socket_mode}
DirectoryMode={dir_mode}
{socket_owner}RemoveOnStop=yes

[Install]
WantedBy=sockets.target
"""


@dataclass
class UnitPaths:
    mode: str  # "user" or "system"
    exec_start: str
    socket: str
    data_dir: str
    cache_dir: str
    hf_home: str
    user: str
    sandbox: bool = True
    runtime_managed: bool = True  # the socket is in $XDG_RUNTIME_DIR/dgx-music: RuntimeDirectory= makes it
    groups: tuple[str, ...] = ()  # supplementary groups for the system unit (those that exist here)
    doc: str = ""  # Documentation= URI
    config_dir: str = ""  # the user's config directory (the HTTP token file is written there)
    storage: str = ""  # store.storage when it is not the data dir: passed with --storage, writable in the sandbox


def exec_start_for(python: str = sys.executable) -> str:
    """The daemon command line for this installation: its dgx-music script, else python -m."""
    script = Path(python).parent / "dgx-music"
    if script.is_file() and os.access(script, os.X_OK):
        return f"{_q(str(script))} daemon"
    return f"{_q(python)} -m dgx_music daemon"


def _q(arg: str) -> str:
    """Quote for systemd's command-line syntax (which also treats % and $ specially)."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    return escaped if escaped and all(c.isalnum() or c in "/._-+:=@," for c in escaped) else json.dumps(escaped)


def _env_lines(env: dict[str, str]) -> str:
    return "\n".join(f"Environment={_q(f'{k}={v}')}" for k, v in env.items())


def _path_arg(p: str) -> str:
    return _q(p.replace("%", "%%")) if " " in p else p.replace("%", "%%")


def _doc_uri() -> str:
    doc = Path(__file__).resolve().parents[1] / "docs" / "operations.md"
    return f"file://{doc}" if doc.is_file() and " " not in str(doc) else ""


def _doc_line(up: UnitPaths) -> str:
    return f"Documentation={up.doc}\n" if up.doc else ""


def render_service(up: UnitPaths) -> str:
    if up.mode == "system":
        # The HTTP token in the state directory: the service's only private, writable, lasting place.
        env = {"DGX_MUSIC_CONFIG": SYSTEM_CONFIG, "DGX_MUSIC_TOKEN_FILE": f"{SYSTEM_DATA}/http-token",
               "DGX_MUSIC_SOCKET_GROUP": SYSTEM_USER,
               "DGX_MUSIC_SOCKET_MODE": "0660", "HF_HOME": f"{SYSTEM_CACHE}/huggingface",
               "NUMBA_CACHE_DIR": f"{SYSTEM_CACHE}/numba", "TRITON_CACHE_DIR": f"{SYSTEM_CACHE}/triton"}
        exec_start = f"{up.exec_start} --socket {SYSTEM_RUNTIME}/daemon.sock --data-dir {SYSTEM_DATA}"
        if up.storage:
            exec_start += f" --storage {_path_arg(up.storage)}"
        service = _COMMON_SERVICE.format(exec_start=exec_start, environment=_env_lines(env))
        groups = list(up.groups)
        rw = " ".join([SYSTEM_DATA, SYSTEM_CACHE, SYSTEM_RUNTIME] + ([_path_arg(up.storage)] if up.storage else []))
        return _SYSTEM_TEMPLATE.format(
            unit=SERVICE, sysuser=SYSTEM_USER, service=service, doc=_doc_line(up),
            groups=f"SupplementaryGroups={' '.join(groups)}\n" if groups else "",
            sandbox=_SYSTEM_SANDBOX.format(rw=rw) if up.sandbox else "# (sandboxing off: --no-sandbox)\n")
    env = {"HF_HOME": up.hf_home, "NUMBA_CACHE_DIR": f"{up.cache_dir}/numba",
           "TRITON_CACHE_DIR": f"{up.cache_dir}/triton"}
    exec_start = f"{up.exec_start} --socket {_path_arg(up.socket)} --data-dir {_path_arg(up.data_dir)}"
    if up.storage:
        exec_start += f" --storage {_path_arg(up.storage)}"
    service = _COMMON_SERVICE.format(exec_start=exec_start, environment=_env_lines(env))
    sock_parent = str(Path(up.socket).parent)
    runtime = ""
    rw_paths = [up.data_dir, up.cache_dir, up.hf_home] + ([up.storage] if up.storage else [])
    if up.config_dir:
        # The daemon writes its HTTP token file (http-token) there at its first start.
        runtime += "ConfigurationDirectory=dgx-music\nConfigurationDirectoryMode=0700\n"
        rw_paths.append(up.config_dir)
    if up.runtime_managed:
        # %t/dgx-music: created by systemd, writable inside the sandbox, kept for the .socket unit.
        runtime += "RuntimeDirectory=dgx-music\nRuntimeDirectoryMode=0700\nRuntimeDirectoryPreserve=yes\n"
    else:
        rw_paths.append(sock_parent)
    rw = " ".join("-" + _path_arg(p) for p in dict.fromkeys(rw_paths))
    return _USER_TEMPLATE.format(
        unit=SERVICE, user=up.user, service=service, runtime=runtime, doc=_doc_line(up),
        sandbox=_USER_SANDBOX.format(rw=rw) if up.sandbox else "# (sandboxing off: --no-sandbox)\n")


def render_socket(up: UnitPaths) -> str:
    if up.mode == "system":
        return _SOCKET_TEMPLATE.format(
            unit=SOCKET, mode="system", socket=f"{SYSTEM_RUNTIME}/daemon.sock", socket_mode="0660",
            dir_mode="0750", socket_owner=f"SocketUser={SYSTEM_USER}\nSocketGroup={SYSTEM_USER}\n")
    return _SOCKET_TEMPLATE.format(unit=SOCKET, mode="user", socket=_path_arg(up.socket), socket_mode="0600",
                                   dir_mode="0700", socket_owner="")


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def unit_paths(mode: str, settings: Any, sandbox: bool = True) -> UnitPaths:
    hf_home = os.environ.get("HF_HOME") or str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                                               / "huggingface")
    return UnitPaths(mode=mode, exec_start=exec_start_for(), socket=str(settings.socket),
                     data_dir=str(settings.data_dir), cache_dir=str(paths.default_cache_dir()),
                     hf_home=hf_home, user=pwd.getpwuid(os.getuid()).pw_name, sandbox=sandbox,
                     runtime_managed=bool(os.environ.get("XDG_RUNTIME_DIR"))
                     and Path(settings.socket).parent == paths.runtime_dir(),
                     groups=tuple(g for g in ("video", "render") if _group_exists(g)), doc=_doc_uri(),
                     config_dir=str(paths.http_token_path(settings).parent),
                     storage=str(settings.storage) if settings.storage != settings.data_dir else "")


EXAMPLE = UnitPaths(mode="user", exec_start="/opt/dgx-music/.venv/bin/dgx-music daemon",
                    socket="/run/user/1000/dgx-music/daemon.sock", data_dir="/home/alice/.local/share/dgx-music",
                    cache_dir="/home/alice/.cache/dgx-music", hf_home="/home/alice/.cache/huggingface",
                    user="alice", groups=("video", "render"), config_dir="/home/alice/.config/dgx-music")


def example_units() -> dict[str, str]:
    """The units in the repository's systemd/ directory: rendered for an example installation."""
    from dataclasses import replace

    system = replace(EXAMPLE, mode="system")
    return {"user/dgx-music.service": render_service(EXAMPLE), "user/dgx-music.socket": render_socket(EXAMPLE),
            "system/dgx-music.service": render_service(system), "system/dgx-music.socket": render_socket(system)}


def default_unit_dir(mode: str) -> Path:
    if mode == "system":
        return Path("/etc/systemd/system")
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def systemctl_commands(mode: str) -> list[list[str]]:
    ctl = ["systemctl"] + (["--user"] if mode == "user" else [])
    cmds = [ctl + ["daemon-reload"], ctl + ["enable", "--now", SOCKET, SERVICE]]
    if mode == "user":
        cmds.append(["loginctl", "enable-linger", pwd.getpwuid(os.getuid()).pw_name])
    return cmds


def _service_install(args: argparse.Namespace) -> int:
    mode = "system" if args.system else "user"
    if mode == "system" and not args.print and os.geteuid() != 0 and args.unit_dir is None:
        return fail(args, "usage", "--system writes to /etc/systemd/system: run it as root (sudo)", EXIT_USAGE)
    try:
        settings = load_settings(args.config, {"daemon.socket": args.socket, "daemon.data_dir": args.data_dir,
                                               "store.storage": args.storage})
    except ConfigError as exc:
        return fail(args, "config", str(exc), EXIT_USAGE)
    up = unit_paths(mode, settings, sandbox=not args.no_sandbox)
    service, sock = render_service(up), render_socket(up)
    if args.print:
        sys.stdout.write(service)
        return EXIT_OK
    unit_dir = Path(args.unit_dir) if args.unit_dir else default_unit_dir(mode)
    unit_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in ((SERVICE, service), (SOCKET, sock)):
        target = unit_dir / name
        tmp = target.with_name(name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        written.append(str(target))
    if mode == "user":
        for d in (up.data_dir, up.cache_dir):
            Path(d).mkdir(parents=True, exist_ok=True, mode=0o700)
    else:
        cfg = Path(SYSTEM_CONFIG) if args.unit_dir is None else unit_dir / "config.toml"
        if not cfg.exists():
            cfg.parent.mkdir(parents=True, exist_ok=True)
            cfg.write_text(render_default_toml(), encoding="utf-8")
            written.append(str(cfg))
    cmds = systemctl_commands(mode)
    if mode == "system":
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            cmds.insert(0, ["useradd", "--system", "--user-group", "--home-dir", SYSTEM_DATA,
                            "--shell", "/usr/sbin/nologin", SYSTEM_USER])
    for w in written:
        print(f"wrote {w}")
    if args.now:
        for cmd in cmds:
            print("+ " + shlex.join(cmd))
            rc = subprocess.run(cmd).returncode
            if rc != 0:
                print(f"dgx-music: `{shlex.join(cmd)}` failed (exit {rc})", file=sys.stderr)
                return EXIT_FAILED
        return EXIT_OK
    print("\nTo enable and start it now:")
    for cmd in cmds:
        print("  " + ("sudo " if mode == "system" and cmd[0] != "loginctl" else "") + shlex.join(cmd))
    if mode == "system":
        print(f"Then let users in: sudo usermod -aG {SYSTEM_USER} USER, and use "
              f"`dgx-music --socket {SYSTEM_RUNTIME}/daemon.sock`.")
    print("Check it: systemctl " + ("--user " if mode == "user" else "") + "status dgx-music; "
          + ("journalctl --user" if mode == "user" else "journalctl") + " -u dgx-music -f")
    return EXIT_OK


# ----------------------------------------------------------------------------- config
def local_settings(args: argparse.Namespace) -> Any:
    """This machine's settings with the command's --config, --socket, --data-dir and --storage."""
    return load_settings(getattr(args, "config", None),
                         {"daemon.socket": getattr(args, "socket", None),
                          "daemon.data_dir": getattr(args, "data_dir", None),
                          "store.storage": getattr(args, "storage", None)})


def _config_show(args: argparse.Namespace) -> int:
    try:
        s = local_settings(args)
    except ConfigError as exc:
        return fail(args, "config", str(exc), EXIT_USAGE)
    by_key = {o.key: o for o in OPTIONS}
    if args.json:
        print_json({"config_file": str(s.config_file) if s.config_file else None,
                    "settings": [{"key": k, "value": v, "source": src, "env": by_key[k].env_name,
                                  "help": by_key[k].help} for k, v, src in s.items()]})
        return EXIT_OK
    rows = [(k, json.dumps(v), src) for k, v, src in s.items()]
    wk = max(len(r[0]) for r in rows)
    wv = min(max(len(r[1]) for r in rows), 48)
    print(f"# config file: {s.config_file or 'none (defaults; ' + str(paths.default_config_file()) + ' not found)'}")
    for k, v, src in rows:
        print(f"{k:<{wk}}  {v:<{wv}}  {src}")
    return EXIT_OK


def _config_path(args: argparse.Namespace) -> int:
    explicit = args.config or os.environ.get("DGX_MUSIC_CONFIG")
    path = Path(explicit).expanduser() if explicit else paths.default_config_file()
    if args.json:
        print_json({"path": str(path), "exists": path.exists()})
    else:
        print(path if path.exists() else f"{path} (does not exist; `dgx-music config init` writes it)")
    return EXIT_OK


def _config_init(args: argparse.Namespace) -> int:
    path = Path(args.path or args.config or os.environ.get("DGX_MUSIC_CONFIG") or paths.default_config_file())
    path = path.expanduser()
    if path.exists() and not args.force:
        return fail(args, "exists", f"{path} exists; pass --force to overwrite it", EXIT_FAILED)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_default_toml(), encoding="utf-8")
    print(f"wrote {path}")
    return EXIT_OK


# ----------------------------------------------------------------------------- backup
BACKUP_EPILOG = """\
examples:
  dgx-music backup ~/backups/2026-12-07 --with-audio
  DGX_MUSIC_STORE=postgresql://dgx@db.lan/dgx dgx-music backup /mnt/backups/studio --with-audio --json"""

RESTORE_EPILOG = """\
examples:
  systemctl --user stop dgx-music.socket dgx-music.service
  dgx-music restore ~/backups/2026-12-07
  createdb dgx_restored && DGX_MUSIC_STORE=postgresql://dgx@db.lan/dgx_restored \\
      dgx-music restore ~/backups/2026-12-07 --storage /mnt/studio"""


# ----------------------------------------------------------------------------- registration
def _common(p: argparse.ArgumentParser, *, data: bool = True, json_flag: bool = True) -> None:
    p.add_argument("--config", metavar="FILE", help="config file (default: ~/.config/dgx-music/config.toml)")
    if data:
        p.add_argument("--socket", metavar="PATH", help="daemon socket")
        p.add_argument("--data-dir", metavar="DIR", help="data directory (default: from the config)")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print one JSON document")


def register(sub: argparse._SubParsersAction) -> None:
    svc = sub.add_parser("service", help="install the systemd units",
                         description="Install systemd units that run the daemon as a service.")
    svc_sub = svc.add_subparsers(dest="service_command", metavar="ACTION")
    inst = svc_sub.add_parser(
        "install", help="render and write dgx-music.service and dgx-music.socket",
        description="Render dgx-music.service and dgx-music.socket with this installation's paths "
                    "(this python, the effective data dir and socket), write them, and print the systemctl "
                    "commands that enable them (or run them with --now).")
    who = inst.add_mutually_exclusive_group()
    who.add_argument("--user", action="store_true", help="a user unit in ~/.config/systemd/user (default)")
    who.add_argument("--system", action="store_true", help="a system unit in /etc/systemd/system, "
                     f"running as user {SYSTEM_USER} (needs root)")
    inst.add_argument("--now", action="store_true", help="also run the systemctl commands")
    inst.add_argument("--print", action="store_true", help="print the rendered service unit; write nothing")
    inst.add_argument("--no-sandbox", action="store_true",
                      help="leave out the namespace-based hardening (for systems where it cannot be set up)")
    inst.add_argument("--unit-dir", metavar="DIR", help=argparse.SUPPRESS)
    inst.add_argument("--storage", metavar="DIR", help="shared audio storage (store.storage): the unit passes "
                      "it with --storage and may write there")
    _common(inst, json_flag=False)
    inst.set_defaults(func=_service_install, json=False)
    requires_extra(inst)  # the unit it writes runs `dgx-music daemon` with this python
    svc.set_defaults(func=lambda a: (svc.print_help(), EXIT_USAGE)[1])

    cfg = sub.add_parser("config", help="show the effective configuration, or write a config file",
                         description="Every option, its effective value and where it came from "
                                     "(default, file, env, flag).")
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="ACTION")
    show = cfg_sub.add_parser("show", help="each effective value and its source")
    _common(show)
    show.set_defaults(func=_config_show)
    pth = cfg_sub.add_parser("path", help="the config file in use")
    _common(pth, data=False)
    pth.set_defaults(func=_config_path)
    init = cfg_sub.add_parser("init", help="write a documented config file with every option at its default")
    init.add_argument("path", nargs="?", help="where (default: the config path)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    _common(init, data=False, json_flag=False)
    init.set_defaults(func=_config_init, json=False)
    cfg.set_defaults(func=_config_show, config=None, socket=None, data_dir=None, json=False)

    bk = sub.add_parser("backup", help="back up the library (safe while the daemon runs)",
                        description="Copy the database with SQLite's online backup API (safe while the daemon "
                                    "runs) into the new directory DEST, and with --with-audio the audio files. "
                                    "With store.url (PostgreSQL) the tables are read in one snapshot into the "
                                    "same format (a SQLite file), so a backup of either backend restores into "
                                    "either.",
                        epilog=BACKUP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    bk.add_argument("dest", metavar="DEST", help="a new (or empty) directory")
    bk.add_argument("--with-audio", action="store_true", help="also copy every track's audio file, and the stored "
                    "melodies and operation sources that jobs refer to")
    bk.add_argument("--storage", metavar="DIR", help="where the audio is (store.storage; default: the data dir)")
    _common(bk)
    bk.set_defaults(func=box_command("backup_cmd", "backup"))
    requires_extra(bk, modules=("aiosqlite",))  # reads the database with the daemon's store

    rs = sub.add_parser("restore", help="restore a backup (the daemon must be stopped)",
                        description="Replace the database with the backup in SRC (and copy its audio files). "
                                    "Refuses while the daemon runs; the old database is kept aside next to it. "
                                    "With store.url (PostgreSQL) the backup (of either backend) goes into that "
                                    "database, which must be empty (a database that holds a library is refused).",
                        epilog=RESTORE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    rs.add_argument("src", metavar="SRC", help="a directory written by `dgx-music backup`")
    rs.add_argument("--storage", metavar="DIR", help="where the audio goes (store.storage; default: the data "
                    "dir); it must exist")
    _common(rs)
    rs.set_defaults(func=box_command("backup_cmd", "restore"))
    requires_extra(rs, modules=("aiosqlite",))
