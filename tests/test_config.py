"""Configuration: TOML file, environment overrides, clear errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialer.config import Secret, load_config
from dialer.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dialer.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_serve_a_newcomer_with_sqlite_under_the_data_dir() -> None:
    config = load_config(None, env={})
    assert config.effective_database_url.startswith("sqlite:///")
    assert config.effective_database_url.endswith("dialer-data/dialer.db")
    assert config.campaign.abandon_after_s == 2.0
    assert config.dialing.ring_timeout_s >= 15  # unanswered calls must ring at least 15 s


def test_file_sets_servers_agents_and_dialing(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
node_id = "east-2"
[[ami.servers]]
name = "pbx1"
host = "10.1.1.1"
secret = "s1"
[[ami.servers]]
name = "pbx2"
host = "10.1.1.2"
weight = 2
[dialing]
channel_template = "PJSIP/{number}@trunk"
ring_timeout_s = 30
[dialing.variables]
CAMPAIGN_TAG = "spring"
[[agents]]
id = "anna"
channel = "PJSIP/anna"
""",
    )
    config = load_config(path, env={})
    assert [s.name for s in config.ami.servers] == ["pbx1", "pbx2"]
    assert config.ami.servers[0].secret == Secret("s1")
    assert config.ami.servers[1].weight == 2
    assert config.dialing.ring_timeout_s == 30.0
    assert config.dialing.variables == {"CAMPAIGN_TAG": "spring"}
    assert config.agents[0].channel == "PJSIP/anna"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, 'database_url = "sqlite:///x.db"\n')
    env = {
        "DATABASE_URL": "postgresql+psycopg://db/dialer",
        "DIALER_AMI_SECRET": "from-env",
        "DIALER_NODE_ID": "n9",
    }
    config = load_config(path, env=env)
    assert config.database_url == "postgresql+psycopg://db/dialer"
    assert all(s.secret.reveal() == "from-env" for s in config.ami.servers)
    assert config.node_id == "n9"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[dialing]\nring_timout_s = 3\n", "dialing.ring_timout_s"),
        ("[campaign]\nwrap_up_s = 'ten'\n", "campaign.wrap_up_s"),
        ("[[ami.servers]]\nport = 'x'\n", "ami.servers[0].port"),
        ("this is not toml", "invalid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_config(_write(tmp_path, text), env={})


def test_secret_is_never_shown(tmp_path: Path) -> None:
    path = _write(tmp_path, '[[ami.servers]]\nsecret = "hunter2"\n')
    config = load_config(path, env={})
    assert "hunter2" not in repr(config) and "hunter2" not in str(config)
    assert config.ami.servers[0].secret.reveal() == "hunter2"
