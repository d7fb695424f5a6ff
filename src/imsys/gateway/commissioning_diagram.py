"""The commissioning state diagram and rule table, generated from
:data:`imsys.gateway.commissioning.TRANSITIONS` (STYLE §2: the diagram comes from the table).

``python -m imsys.gateway.commissioning_diagram`` prints both blocks of docs/commissioning.md;
a test keeps the document equal to this output.
"""

from __future__ import annotations

from imsys.gateway.commissioning import TRANSITIONS, Phase, Rule

_SECTIONS = {
    Phase.PRE_PERSONALISATION_1: "§2.3.1.1",
    Phase.INTEGRATION: "§2.3.1.2",
    Phase.PRE_PERSONALISATION_2: "§2.3.1.3",
    Phase.INSTALLATION: "§2.3.2",
    Phase.PERSONALISATION: "§2.3.3",
    Phase.OPERATION: "§2.3.4",
}


def _roles(rule: Rule) -> str:
    return ", ".join(sorted(role.value for role in rule.roles))


def mermaid() -> str:
    """A Mermaid ``stateDiagram-v2``: phase changes as edges, in-phase steps as notes."""
    lines = ["stateDiagram-v2", f"    [*] --> {Phase.PRE_PERSONALISATION_1.value}"]
    for (phase, event_type), rule in TRANSITIONS.items():
        for index, target in enumerate(rule.targets):
            if target is not phase:
                guard = f" [{rule.when[index]}]" if index < len(rule.when) else ""
                lines.append(f"    {phase.value} --> {target.value}: "
                             f"{event_type.step.value}{guard} ({_roles(rule)})")
    for phase in Phase:
        steps = [f"        {event_type.step.value} ({_roles(rule)})"
                 for (p, event_type), rule in TRANSITIONS.items()
                 if p is phase and rule.targets == (phase,)]
        if steps:
            lines += [f"    note right of {phase.value}", *steps, "    end note"]
    return "\n".join(lines) + "\n"


def markdown_table() -> str:
    """One row per (phase, step): roles and the phase that follows."""
    rows = ["| phase | seed | step (event) | roles | next phase |",
            "| --- | --- | --- | --- | --- |"]
    for (phase, event_type), rule in TRANSITIONS.items():
        targets = " or ".join(
            f"{t.value} ({rule.when[i]})" if len(rule.targets) > 1 and i < len(rule.when)
            else t.value for i, t in enumerate(rule.targets))
        rows.append(f"| {phase.value} | {_SECTIONS[phase]} | `{event_type.__name__}` "
                    f"({event_type.step.value}) | {_roles(rule)} | {targets} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(markdown_table())
    print("```mermaid")
    print(mermaid(), end="")
    print("```")
