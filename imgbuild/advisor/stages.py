"""The stages of a Dockerfile as instruction lists, and which of them a target's build runs.

BuildKit builds the target stage (the last one when no stage is named) and, recursively, every stage
it needs: its ``FROM`` when that names an earlier stage, ``COPY --from=STAGE`` and ``RUN
--mount=...,from=STAGE``. Other stages are never built, so their findings do not concern the target.
"""

from __future__ import annotations

from dataclasses import dataclass

from imgbuild.dockerfile import Instruction, Source


@dataclass(frozen=True, kw_only=True)
class StageBlock:
    index: int
    name: str | None  # lower-cased
    base: str  # the FROM reference as written
    from_line: int
    parent: int | None  # index of the earlier stage it starts FROM, if any
    body: tuple[Instruction, ...]  # instructions after FROM, up to the next FROM


def split_stages(source: Source) -> tuple[tuple[Instruction, ...], tuple[StageBlock, ...]]:
    """(instructions before the first FROM, the stages)."""
    preamble: list[Instruction] = []
    blocks: list[tuple[Instruction, list[Instruction]]] = []
    for ins in source.instructions:
        if ins.keyword == "FROM":
            blocks.append((ins, []))
        elif blocks:
            blocks[-1][1].append(ins)
        else:
            preamble.append(ins)
    out: list[StageBlock] = []
    names: dict[str, int] = {}
    for index, (frm, body) in enumerate(blocks):
        words = frm.body.split()
        base = words[0] if words else ""
        name = words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else None
        parent = names.get(base.lower())
        if parent is None and base.isdigit() and int(base) < index:
            parent = int(base)
        out.append(StageBlock(index=index, name=name, base=base, from_line=frm.line, parent=parent,
                              body=tuple(body)))
        if name:
            names[name] = index
    return tuple(preamble), tuple(out)


def needed(stages: tuple[StageBlock, ...], target: str | None) -> tuple[StageBlock, ...]:
    """The stages building ``target`` (a stage name; None: the last stage) runs, in file order.

    Empty when the target names no stage of the file (``imgbuild validate`` reports that).
    """
    if not stages:
        return ()
    by_name = {s.name: s.index for s in stages if s.name}
    if target is None:
        start = stages[-1].index
    elif target.lower() in by_name:
        start = by_name[target.lower()]
    else:
        return ()
    seen: set[int] = set()
    todo = [start]
    while todo:
        i = todo.pop()
        if i in seen:
            continue
        seen.add(i)
        s = stages[i]
        if s.parent is not None:
            todo.append(s.parent)
        for ins in s.body:
            for ref in _stage_refs(ins):
                j = by_name.get(ref.lower())
                if j is None and ref.isdigit():
                    j = int(ref)
                if j is not None and j < i:
                    todo.append(j)
    return tuple(s for s in stages if s.index in seen)


def _stage_refs(ins: Instruction) -> list[str]:
    refs = list(ins.flag_values("from")) if ins.keyword in ("COPY", "ADD") else []
    for mount in ins.flag_values("mount") if ins.keyword == "RUN" else ():
        for part in mount.split(","):
            key, _, value = part.partition("=")
            if key.strip() == "from" and value:
                refs.append(value.strip())
    return refs
