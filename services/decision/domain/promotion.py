"""New policy versions that end an experiment (ADR 0018): stopped (everyone gets the rule's
own remedies from then on) or a winner promoted (the rule grants the arm's remedies and the
experiment is gone). Pure: a policy's YAML text in, the new version's text and its validated
policy out.

The text is rewritten from the parsed YAML, so the grants keep the author's notation (a
quoted "2.50" stays a string, points stay integers) but comments are not carried over: the
earlier version's file keeps them, and the new file says where it came from.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import yaml

from services.decision.domain.policy import HOLDOUT, Policy, PolicyError, parse_policy


def _loaded(text: str, origin: str, experiment_id: str, version: str
            ) -> tuple[dict[str, Any], dict[str, Any]]:
    current = parse_policy(text, origin)  # only a valid policy gets a successor
    experiment = current.experiment
    if experiment is None:
        raise PolicyError(origin, ["the policy runs no experiment"])
    if experiment.id != experiment_id:
        raise PolicyError(origin, [f"the policy's experiment is {experiment.id!r}, not "
                                   f"{experiment_id!r}"])
    if version == current.version:
        raise PolicyError(origin, [f"the new version must differ from {current.version!r}"])
    data = yaml.safe_load(text)
    data["version"] = version
    return data, data["experiment"]


def _written(data: dict[str, Any], origin: str, why: str) -> tuple[str, Policy]:
    text = f"# {why}\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=96)
    return text, parse_policy(text, f"{origin} (new version)")


def stopped(text: str, experiment_id: str, version: str, *, origin: str = "<policy>",
            until: datetime | None = None) -> tuple[str, Policy]:
    """The next version with the experiment stopped: from `until` on (a decision's time),
    or at once. Decisions keep the arms they recorded, so the report still reads them."""
    data, experiment = _loaded(text, origin, experiment_id, version)
    if until is None:
        experiment["stopped"] = True
    else:
        experiment["until"] = until.isoformat()
    previous = parse_policy(text, origin).version
    return _written(data, origin, f"version {version}: version {previous} with experiment "
                    f"{experiment_id} stopped" + (f" from {until.isoformat()}" if until else ""))


def promoted(text: str, experiment_id: str, arm: str, version: str, *,
             origin: str = "<policy>") -> tuple[str, Policy]:
    """The next version in which the varied rule grants what `arm` granted (a variant's
    grant; the holdout's: the rule's own remedies, or nothing beyond the apology) and the
    experiment is removed."""
    data, experiment = _loaded(text, origin, experiment_id, version)
    rule = next(r for r in data["rules"] if r["id"] == experiment["rule"])
    variants = {v["id"]: v for v in experiment["variants"]}
    if arm == HOLDOUT:
        holdout = experiment.get("holdout")
        if holdout is None:
            raise PolicyError(origin, [f"experiment {experiment_id} has no holdout"])
        if holdout.get("gets", "rule") == "apology":
            rule["grant"] = []
            rule.pop("offer", None)
    elif arm in variants:
        rule["grant"] = variants[arm].get("grant", [])
    else:
        raise PolicyError(origin, [f"experiment {experiment_id} has no arm {arm!r} (arms: "
                                   f"{', '.join([*variants, HOLDOUT])})"])
    del data["experiment"]
    previous = parse_policy(text, origin).version
    return _written(data, origin, f"version {version}: version {previous} with arm {arm} of "
                    f"experiment {experiment_id} promoted to rule {rule['id']}")
