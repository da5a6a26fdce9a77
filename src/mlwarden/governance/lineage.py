"""The lineage graph: which data a model came from, what a dataset fed, and whether it all still hashes.

Nodes are registered artefacts (or bare digests nobody registered); a run links each of its
inputs to each of its outputs. :func:`verify` re-hashes every file the registry can reach and
names what changed or disappeared.
"""

from __future__ import annotations

import html
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from mlwarden.errors import DataError
from mlwarden.governance.registry import Artifact, Registry, Run, file_sha256

__all__ = [
    "Graph",
    "VerifyResult",
    "build_graph",
    "models_trained_on",
    "render_html",
    "render_text",
    "verify",
]


@dataclass
class Graph:
    """Lineage as adjacency between node ids (artefact names, or ``sha256:<digest>``)."""

    artifacts: dict[str, Artifact] = field(default_factory=dict)
    children: dict[str, set[tuple[str, str]]] = field(default_factory=dict)  # node -> (node, run)
    parents: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    runs: dict[str, Run] = field(default_factory=dict)

    def node_of(self, digest: str, by_digest: dict[str, str]) -> str:
        """The node id of ``digest``."""
        return by_digest.get(digest, f"sha256:{digest[:12]}")

    def _walk(self, start: str, adjacency: dict[str, set[tuple[str, str]]]) -> list[str]:
        seen, order, todo = {start}, [], deque([start])
        while todo:
            node = todo.popleft()
            for nxt, _ in sorted(adjacency.get(node, ())):
                if nxt not in seen:
                    seen.add(nxt)
                    order.append(nxt)
                    todo.append(nxt)
        return order

    def descendants(self, artifact: Artifact) -> list[Artifact]:
        """Artefacts derived from ``artifact``, nearest first."""
        return [
            self.artifacts[n]
            for n in self._walk(artifact.name, self.children)
            if n in self.artifacts
        ]

    def ancestors(self, artifact: Artifact) -> list[Artifact]:
        """Artefacts ``artifact`` was derived from, nearest first."""
        return [
            self.artifacts[n]
            for n in self._walk(artifact.name, self.parents)
            if n in self.artifacts
        ]

    def component(self, name: str) -> tuple[list[str], list[tuple[str, str, str]]]:
        """Nodes upstream and downstream of ``name`` and the edges ``(parent, child, run)`` among them."""
        nodes = [name, *self._walk(name, self.parents), *self._walk(name, self.children)]
        keep = set(nodes)
        edges = sorted(
            (parent, child, run)
            for parent in keep
            for child, run in self.children.get(parent, ())
            if child in keep
        )
        return list(dict.fromkeys(nodes)), edges


def build_graph(registry: Registry) -> Graph:
    """The whole lineage graph the registry holds."""
    graph = Graph()
    by_digest: dict[str, str] = {}
    for artifact in registry.list():
        graph.artifacts[artifact.name] = artifact
        for digest in artifact.digests:
            by_digest.setdefault(digest, artifact.name)
    for run in registry.all_runs():
        graph.runs[run.run_id] = run
        for digest_in in run.inputs:
            for digest_out in run.outputs:
                parent = graph.node_of(digest_in, by_digest)
                child = graph.node_of(digest_out, by_digest)
                if parent == child:
                    continue
                graph.children.setdefault(parent, set()).add((child, run.run_id))
                graph.parents.setdefault(child, set()).add((parent, run.run_id))
    return graph


def models_trained_on(registry: Registry, name: str) -> list[Artifact]:
    """Models trained, directly or through transformations, on the artefact ``name``."""
    graph = build_graph(registry)
    return [a for a in graph.descendants(registry.get(name)) if a.kind == "model"]


def _label(graph: Graph, node: str) -> str:
    artifact = graph.artifacts.get(node)
    if artifact is None:
        return f"{node} (unregistered)"
    state = "" if artifact.status == "active" else f" [{artifact.status}]"
    return f"{artifact.kind} {artifact.name} sha256:{artifact.file_sha256[:12]}{state}"


def render_text(registry: Registry, name: str) -> str:
    """The lineage of ``name`` as indented text: upstream (what it came from), then downstream."""
    registry.get(name)
    graph = build_graph(registry)
    lines = [_label(graph, name)]

    def tree(
        node: str,
        adjacency: dict[str, set[tuple[str, str]]],
        arrow: str,
        depth: int,
        seen: set[str],
    ) -> None:
        for nxt, run_id in sorted(adjacency.get(node, ())):
            run = graph.runs[run_id]
            how = f"{run.kind}: {run.command}" + (f" ({run.version})" if run.version else "")
            lines.append(f"{'  ' * depth}{arrow} {_label(graph, nxt)}  via {how}")
            if nxt not in seen:
                tree(nxt, adjacency, arrow, depth + 1, seen | {nxt})

    lines.append("upstream:")
    tree(name, graph.parents, "<-", 1, {name})
    lines.append("downstream:")
    tree(name, graph.children, "->", 1, {name})
    return "\n".join(lines)


def render_html(registry: Registry, name: str) -> str:
    """A self-contained HTML page drawing the lineage of ``name`` (inline SVG, no scripts)."""
    registry.get(name)
    graph = build_graph(registry)
    nodes, edges = graph.component(name)
    depth = {name: 0}
    # place ancestors left (negative) and descendants right of the focus
    for adjacency, sign in ((graph.parents, -1), (graph.children, 1)):
        todo = deque([name])
        while todo:
            node = todo.popleft()
            for nxt, _ in sorted(adjacency.get(node, ())):
                if nxt not in depth:
                    depth[nxt] = depth[node] + sign
                    todo.append(nxt)
    columns: dict[int, list[str]] = {}
    for node in nodes:
        columns.setdefault(depth.get(node, 0), []).append(node)
    low = min(columns)
    box_w, box_h, gap_x, gap_y = 260, 54, 90, 30
    pos = {
        node: (20 + (col - low) * (box_w + gap_x), 20 + row * (box_h + gap_y))
        for col, members in columns.items()
        for row, node in enumerate(members)
    }
    width = 40 + (max(columns) - low + 1) * (box_w + gap_x)
    height = 40 + max(len(m) for m in columns.values()) * (box_h + gap_y)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">',
        '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="8" refY="4" orient="auto">'
        '<path d="M0,0 L8,4 L0,8 z"/></marker></defs>',
    ]
    for parent, child, run_id in edges:
        (x1, y1), (x2, y2) = pos[parent], pos[child]
        run = graph.runs[run_id]
        parts.append(
            f'<line x1="{x1 + box_w}" y1="{y1 + box_h / 2}" x2="{x2}" y2="{y2 + box_h / 2}" '
            'stroke="#555" marker-end="url(#a)"/>'
            f'<text x="{(x1 + box_w + x2) / 2}" y="{(y1 + y2) / 2 + box_h / 2 - 4}" '
            f'font-size="10" text-anchor="middle">{html.escape(run.kind)}</text>'
        )
    colours = {"dataset": "#e8f1fb", "model": "#fdf0e0"}
    for node in nodes:
        x, y = pos[node]
        artifact = graph.artifacts.get(node)
        fill = colours.get(artifact.kind, "#eee") if artifact else "#eee"
        stroke = "#c00" if artifact is not None and artifact.status != "active" else "#333"
        width_px = 3 if node == name else 1
        title = html.escape(_label(graph, node))
        parts.append(
            f'<g><title>{title}</title><rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" '
            f'rx="6" fill="{fill}" stroke="{stroke}" stroke-width="{width_px}"/>'
            f'<text x="{x + 8}" y="{y + 22}" font-size="13">{html.escape(node)}</text>'
            f'<text x="{x + 8}" y="{y + 40}" font-size="10" fill="#555">'
            f"{html.escape(title.split(' ', 1)[0])} "
            f"{html.escape(artifact.file_sha256[:16] if artifact else '')}"
            f"{html.escape(' ' + artifact.status if artifact and artifact.status != 'active' else '')}"
            "</text></g>"
        )
    parts.append("</svg>")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>lineage of {html.escape(name)}</title></head><body>"
        f"<h1>Lineage of {html.escape(name)}</h1>{''.join(parts)}"
        f"<pre>{html.escape(render_text(registry, name))}</pre></body></html>"
    )


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify` found: ``ok``, ``changed`` and ``missing`` artefact names."""

    ok: tuple[str, ...]
    changed: tuple[tuple[str, str, str], ...]  # (name, recorded digest, current digest)
    missing: tuple[str, ...]
    skipped: tuple[str, ...]  # deleted or quarantined on purpose

    @property
    def passed(self) -> bool:
        """No active artefact changed or disappeared."""
        return not self.changed and not self.missing


def verify(registry: Registry) -> VerifyResult:
    """Re-hash every active artefact's file and compare it with the recorded digest."""
    ok: list[str] = []
    changed: list[tuple[str, str, str]] = []
    missing: list[str] = []
    skipped: list[str] = []
    for artifact in registry.list():
        if artifact.status != "active":
            skipped.append(artifact.name)
            continue
        try:
            current = file_sha256(Path(artifact.path))
        except (DataError, OSError):
            missing.append(artifact.name)
            continue
        if current == artifact.file_sha256:
            ok.append(artifact.name)
        else:
            changed.append((artifact.name, artifact.file_sha256, current))
    return VerifyResult(tuple(ok), tuple(changed), tuple(missing), tuple(skipped))
