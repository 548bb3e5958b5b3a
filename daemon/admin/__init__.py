"""Box-side commands: the code behind the CLI commands that run on the daemon's machine (cli/daemon_cmd.py)."""
