"""The restriction ladder: one order, used by the monitor, the config, the app and the key store."""

from __future__ import annotations

import pytest

from mlwarden.errors import ConfigError
from mlwarden.serve.restriction import LADDER, Restriction


def test_the_ladder_runs_from_none_to_block() -> None:
    assert LADDER == ("none", "throttle", "label_only", "block")
    assert Restriction.NONE < Restriction.THROTTLE < Restriction.LABEL_ONLY < Restriction.BLOCK
    assert Restriction.BLOCK.weaker() == (
        Restriction.NONE,
        Restriction.THROTTLE,
        Restriction.LABEL_ONLY,
    )


def test_strictest_picks_the_highest_rung_and_none_for_nothing() -> None:
    assert Restriction.strictest(["throttle", "block", None, "label_only"]) is Restriction.BLOCK
    assert Restriction.strictest([]) is Restriction.NONE


def test_an_unknown_rung_is_a_config_error_naming_it_and_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"monitor.actions.prada 'ban' is not one of none, thr"):
        Restriction.parse("ban", where="monitor.actions.prada")


def test_every_user_of_the_ladder_accepts_exactly_its_rungs() -> None:
    from mlwarden.serve.config import MonitorSettings
    from mlwarden.serve.keys import RESTRICTIONS
    from mlwarden.serve.monitor import ACTIONS, MonitorConfig

    assert ACTIONS == LADDER and LADDER[1:] == RESTRICTIONS  # a key's "none" is no restriction
    for rung in LADDER:
        assert MonitorSettings(action=rung).action == rung
        assert MonitorConfig(actions={"prada": rung}).action_for("prada") == rung
    for bad in ("flag", "reject"):
        with pytest.raises(ConfigError, match=bad):
            MonitorSettings(action=bad)
        with pytest.raises(ConfigError, match=bad):
            MonitorConfig(actions={"prada": bad})
