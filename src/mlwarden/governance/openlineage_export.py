"""OpenLineage export: the registry's artefacts and runs as OpenLineage events.

Catalogues that speak OpenLineage (Marquez, DataHub, OpenMetadata, ...) ingest these events, so
the lineage recorded here shows up beside the lineage of the pipelines that produced the data.
The events are built with the ``openlineage-python`` client's own classes (spec 2-0-2) and
written by its file transport; nothing is sent over the network.

* one ``DatasetEvent`` per registered artefact (static metadata): its version facet is its file
  digest, a type facet (``FILE`` or ``MODEL``), and, from its data card, a documentation facet,
  an ownership facet and tags (source, collection method, licence, purpose, sensitivity,
  retention, status);
* one ``START`` and one ``COMPLETE`` ``RunEvent`` per run (transform, train, delete), both at the
  run's recorded time, with its inputs and outputs; a ``delete`` run names the deleted dataset as
  an output carrying a ``DROP`` lifecycle facet.

Registered files are named as OpenLineage's naming spec names local files (namespace ``file``,
name the absolute path); a digest nobody registered is ``sha256:<digest>`` in the export's
namespace. Run ids are the registry's, so exporting twice sends the same runs again, not new ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlwarden._io import atomic_write_with
from mlwarden.governance.registry import Artifact, Registry, Run

if TYPE_CHECKING:
    from openlineage.client.event_v2 import Dataset

__all__ = [
    "DEFAULT_NAMESPACE",
    "PRODUCER",
    "emit_openlineage",
    "export_openlineage",
    "openlineage_events",
]

DEFAULT_NAMESPACE = "mlwarden"
#: The ``producer`` of every event and facet (a URI, as the spec asks).
PRODUCER = "https://github.com/mlwarden/mlwarden"
_CARD_TAGS = ("source", "collection_method", "licence", "purpose", "sensitivity", "retention")


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, tz=timezone.utc).isoformat()


def _dataset_facets(artifact: Artifact) -> dict[str, Any]:
    from openlineage.client.generated.dataset_type_dataset import DatasetTypeDatasetFacet
    from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
    from openlineage.client.generated.documentation_dataset import DocumentationDatasetFacet
    from openlineage.client.generated.ownership_dataset import Owner, OwnershipDatasetFacet
    from openlineage.client.generated.tags_dataset import TagsDatasetFacet, TagsDatasetFacetFields

    facets: dict[str, Any] = {
        "version": DatasetVersionDatasetFacet(
            datasetVersion=f"sha256:{artifact.file_sha256}", producer=PRODUCER
        ),
        "datasetType": DatasetTypeDatasetFacet(
            datasetType="MODEL" if artifact.kind == "model" else "FILE", producer=PRODUCER
        ),
    }
    tags = [TagsDatasetFacetFields("mlwarden.name", artifact.name, "MLWARDEN")]
    tags.append(TagsDatasetFacetFields("mlwarden.status", artifact.status, "MLWARDEN"))
    if artifact.data_sha256:
        tags.append(
            TagsDatasetFacetFields("mlwarden.data_sha256", artifact.data_sha256, "MLWARDEN")
        )
    card = artifact.card
    if card is not None:
        values = card.model_dump(mode="json")
        tags += [TagsDatasetFacetFields(key, str(values[key]), "MLWARDEN") for key in _CARD_TAGS]
        facets["documentation"] = DocumentationDatasetFacet(
            description=card.description or card.purpose, producer=PRODUCER
        )
        facets["ownership"] = OwnershipDatasetFacet(
            owners=[Owner(name=card.owner, type="OWNER")], producer=PRODUCER
        )
    facets["tags"] = TagsDatasetFacet(tags=tags, producer=PRODUCER)
    return facets


def _identity(artifact: Artifact) -> tuple[str, str]:
    """(namespace, name) of a registered file, as OpenLineage names local files."""
    from openlineage.client.naming.dataset import LocalFileSystem

    naming = LocalFileSystem(path=artifact.path)
    return naming.get_namespace(), naming.get_name()


def openlineage_events(registry: Registry, *, namespace: str = DEFAULT_NAMESPACE) -> Iterator[Any]:
    """Every artefact as a ``DatasetEvent``, then every run as ``START`` and ``COMPLETE`` events.

    Parameters
    ----------
    registry
        The registry to export.
    namespace
        The OpenLineage namespace of the jobs (and of digests nobody registered).

    Yields
    ------
    openlineage.client.event_v2.DatasetEvent | openlineage.client.event_v2.RunEvent
        The events, oldest artefact and oldest run first.
    """
    from openlineage.client.event_v2 import (
        DatasetEvent,
        InputDataset,
        Job,
        OutputDataset,
        RunEvent,
        RunState,
        StaticDataset,
    )
    from openlineage.client.event_v2 import Run as OlRun
    from openlineage.client.generated.job_type_job import JobTypeJobFacet
    from openlineage.client.generated.lifecycle_state_change_dataset import (
        LifecycleStateChange,
        LifecycleStateChangeDatasetFacet,
    )
    from openlineage.client.generated.processing_engine_run import ProcessingEngineRunFacet

    from mlwarden import __version__

    artifacts = registry.list()
    by_digest: dict[str, Artifact] = {}
    for artifact in artifacts:
        for digest in artifact.digests:
            by_digest.setdefault(digest, artifact)
        ns, name = _identity(artifact)
        yield DatasetEvent(
            eventTime=_iso(artifact.registered_at),
            producer=PRODUCER,
            dataset=StaticDataset(ns, name, facets=_dataset_facets(artifact)),
        )

    def datasets(run: Run, digests: tuple[str, ...], cls: type[Dataset]) -> list[Any]:
        out: dict[tuple[str, str], Any] = {}
        for digest in digests:
            artifact = by_digest.get(digest)
            if artifact is None:
                key = (namespace, f"sha256:{digest}")
                out.setdefault(key, cls(*key))
                continue
            key = _identity(artifact)
            if key in out:
                continue
            facets: dict[str, Any] = {}
            if run.kind == "delete":
                facets["lifecycleStateChange"] = LifecycleStateChangeDatasetFacet(
                    lifecycleStateChange=LifecycleStateChange.DROP, producer=PRODUCER
                )
            out[key] = cls(*key, facets=facets)
        return list(out.values())

    for run in registry.all_runs():
        job = Job(
            namespace,
            f"{run.kind}:{run.command}",
            facets={
                "jobType": JobTypeJobFacet(
                    processingType="BATCH",
                    integration="MLWARDEN",
                    jobType=run.kind.upper(),
                    producer=PRODUCER,
                )
            },
        )
        engine = ProcessingEngineRunFacet(
            version=run.version or "unknown",
            name=run.command.split(" ", 1)[0] or "unknown",
            openlineageAdapterVersion=__version__,
            producer=PRODUCER,
        )
        if run.kind == "delete":  # what a deletion produces is the dropped dataset
            inputs, outputs = [], datasets(run, run.inputs, OutputDataset)
        else:
            inputs = datasets(run, run.inputs, InputDataset)
            outputs = datasets(run, run.outputs, OutputDataset)
        for state in (RunState.START, RunState.COMPLETE):
            yield RunEvent(
                eventType=state,
                eventTime=_iso(run.started_at),
                producer=PRODUCER,
                run=OlRun(runId=run.run_id, facets={"processing_engine": engine}),
                job=job,
                inputs=inputs,
                outputs=outputs,
            )


def emit_openlineage(
    registry: Registry, transport: Any, *, namespace: str = DEFAULT_NAMESPACE
) -> int:
    """Send every event through an OpenLineage client on ``transport``; how many were sent.

    Parameters
    ----------
    registry
        The registry to export.
    transport
        Any ``openlineage.client.transport.Transport`` (file, console, HTTP to Marquez, Kafka...):
        the client adds its own run facets (its version) before handing each event to it.
    namespace
        The OpenLineage namespace of the jobs.
    """
    from openlineage.client import OpenLineageClient

    client = OpenLineageClient(transport=transport)
    count = 0
    for event in openlineage_events(registry, namespace=namespace):
        client.emit(event)
        count += 1
    return count


def export_openlineage(
    registry: Registry, path: str | Path, *, namespace: str = DEFAULT_NAMESPACE
) -> int:
    """Write every event to ``path`` (JSON lines) with OpenLineage's file transport; their count.

    The transport appends to a temporary file beside ``path`` that replaces ``path`` once every
    event is written, so a reader never sees half an export.
    """
    from openlineage.client.transport.file import FileConfig, FileTransport

    count = 0

    def write(tmp: Path) -> None:
        nonlocal count
        transport = FileTransport(FileConfig(log_file_path=str(tmp), append=True))
        count = emit_openlineage(registry, transport, namespace=namespace)

    atomic_write_with(path, write)
    return count
