"""Request and response bodies of the REST API (pydantic models; they are the OpenAPI schema at ``/docs``).

A search is one of: an uploaded clip (multipart field ``file`` plus the :class:`UploadSearchForm`
fields), or a JSON :class:`SearchRequest` with exactly one of ``id`` (more like this), ``ids``
(a batch of item ids), ``vector`` (one query vector) or ``vectors`` (a batch), or with none of
them and a ``tag`` (the collection ranked by that classifier tag's score). Filters are the
Python API's: ``label`` (one or several), ``path_prefix`` (relative to the indexed folder, as
hit paths are shown), ``min_duration_s`` / ``max_duration_s``, ``exclude_same_file``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_K = 1000
MAX_BATCH = 256
MAX_ID = 2**62  # item ids stay far inside int64 (the store's MAX_ID): a larger one is a 422, not an OverflowError
ItemIdField = Annotated[int, Field(ge=0, le=MAX_ID)]


class ErrorDetail(BaseModel):
    status: int
    code: str = Field(description="stable machine-readable code: not_found, too_large, unsupported_media, busy, "
                                  "unknown_tag, ...")
    message: str = Field(description="what went wrong and how to fix it")
    suggestions: list[str] | None = Field(None, description="unknown_tag: the class names closest to the one given")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # nan/inf in any number: 422

    k: int = Field(10, ge=1, le=MAX_K, description="number of hits per query")
    label: list[str] | None = Field(None, description="keep only items with one of these labels")
    path_prefix: str | None = Field(None, description="keep only items whose path (relative to the indexed folder) starts with this")
    min_duration_s: float | None = Field(None, ge=0)
    max_duration_s: float | None = Field(None, ge=0)
    exclude_same_file: bool = Field(False, description="drop hits from the query's own file: the item's file (id "
                                                       "searches), or the collection file an upload is a copy of "
                                                       "(same bytes)")
    tag: str | None = Field(None, description="keep only items carrying this classifier tag (an AudioSet class name; "
                                              "collections made with yamnet or panns)")
    group: Literal["region", "file", "none"] | None = Field(
        None, description="merge hits of one file: touching segments (region, the default for segment collections), "
                          "whole files (file), or not at all (none)")

    @field_validator("label", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        if v is None or v == "" or v == []:
            return None
        if isinstance(v, str):
            return [s for s in (p.strip() for p in v.split(",")) if s] or None
        return v

    @field_validator("path_prefix")
    @classmethod
    def _relative(cls, v):
        if v is None or v == "":
            return None
        parts = v.replace("\\", "/").split("/")
        if v.startswith("/") or ".." in parts or "\x00" in v:
            raise ValueError("path_prefix is relative to the indexed folder and may not contain '..'")
        return v


class UploadSearchForm(Filters):
    """The fields sent next to the uploaded ``file`` in a multipart search."""

    start_s: float | None = Field(None, ge=0, description="search only this part of the clip: start (seconds)")
    end_s: float | None = Field(None, gt=0, description="... and end (seconds)")

    @model_validator(mode="after")
    def _span(self):
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError("end_s must be after start_s")
        return self


QUERY_KINDS = ("id", "ids", "vector", "vectors", "text")


class SearchRequest(Filters):
    """A JSON search: exactly one of ``id``, ``ids``, ``vector``, ``vectors``, ``text``; or none and a ``tag`` (rank by the tag)."""

    id: int | None = Field(None, ge=0, le=MAX_ID, description="search by an item's stored vector (more like this)")
    ids: list[ItemIdField] | None = Field(None, min_length=1, max_length=MAX_BATCH, description="a batch of item ids")
    vector: list[float] | None = Field(None, min_length=1, description="one query vector of the collection's dim")
    vectors: list[list[float]] | None = Field(None, min_length=1, max_length=MAX_BATCH, description="a batch of vectors")
    text: str | None = Field(None, min_length=1, max_length=1000, pattern=r"\S",
                             description="describe the sound, e.g. 'a dog barking' (collections embedded by CLAP)")

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [n for n in QUERY_KINDS if getattr(self, n) is not None]
        if len(given) > 1 or (not given and not self.tag):
            raise ValueError("give exactly one of id, ids, vector, vectors, text, or a tag alone to rank the collection by "
                             "that classifier tag (or upload a clip as multipart/form-data field 'file')")
        return self

    @property
    def kind(self) -> str:
        return next((n for n in QUERY_KINDS if getattr(self, n) is not None), "tag")


class TagOut(BaseModel):
    name: str
    score: float


class HitOut(BaseModel):
    rank: int
    id: int
    score: float = Field(description="similarity (cosine) or distance (euclidean) as the index reports it")
    label: str | None
    path: str = Field(description="path relative to the folder it was indexed from")
    file_name: str
    offset_s: float
    duration_s: float
    end_s: float | None = Field(None, description="a region's end (grouped segment hits); its start is offset_s")
    segments: int | None = Field(None, description="how many segment hits a region merges")
    tags: list[TagOut] | None = Field(None, description="the item's strongest classifier tags, at most 5 (collections with tags)")
    shared_tags: list[str] | None = Field(None, description="tags the item shares with the query ('why similar')")
    audio_url: str
    spectrogram_url: str
    item_url: str


class Timing(BaseModel):
    queue_ms: float | None = Field(None, description="wait for an inference worker (uploads)")
    decode_ms: float
    embed_ms: float
    search_ms: float
    total_ms: float = Field(description="decode + embed + search as the searcher measured it")
    server_ms: float = Field(description="from request received to response built, upload parsing included")


class QueryOut(BaseModel):
    kind: Literal["upload", "id", "ids", "vector", "vectors", "text", "tag"]
    id: int | None = None
    ids: list[int] | None = None
    text: str | None = Field(None, description="a text search: the description searched for")
    tag: str | None = Field(None, description="a tag-only search: the tag the collection was ranked by")
    file_name: str | None = None
    start_s: float | None = None
    end_s: float | None = None


class SearchResponse(BaseModel):
    collection: str
    revision: int
    k: int
    query: QueryOut
    hits: list[HitOut] | None = Field(None, description="the ranked hits of a single query")
    results: list[list[HitOut]] | None = Field(None, description="one ranked list per query of a batch")
    timing: Timing


class LabelCount(BaseModel):
    label: str
    count: int


class EmbedderOut(BaseModel):
    name: str
    version: str | None = None
    dim: int | None = None
    sample_rate: int | None = None
    weights_sha256: str | None = None


class CollectionSummary(BaseModel):
    name: str
    size: int
    revision: int
    embedder: str
    metric: str
    url: str


class CollectionList(BaseModel):
    collections: list[CollectionSummary]
    write_enabled: bool
    max_upload_mb: float


class CollectionInfo(BaseModel):
    name: str
    size: int
    revision: int
    embedder: EmbedderOut
    pooling: str
    metric: str
    dim: int
    segment_s: float | None
    segment_hop_s: float | None
    index_kind: str | None
    labels: list[LabelCount] = Field(description="labels with their item counts, most frequent first")
    unlabelled: int
    sources: list[str] = Field(description="names of the folders the collection was indexed from")


class TagCount(BaseModel):
    name: str
    count: int = Field(description="vectors holding this tag among their stored tags at min_score or above")


class TagList(BaseModel):
    collection: str
    tagged: bool = Field(description="whether the collection stores classifier tags (indexed with yamnet or panns)")
    min_score: float
    tags: list[TagCount] = Field(description="the tags the collection holds, most frequent first")
    classes: list[str] = Field(description="every class name of the collection's classifier: the tags one can search")


class ItemOut(BaseModel):
    id: int
    path: str
    file_name: str
    label: str | None
    offset_s: float
    duration_s: float
    content_sha256: str | None
    segment: bool = Field(description="a segment of a longer file (its audio is a WAV of just that span)")
    audio: Literal["original", "wav"] = Field(description="what GET .../audio sends: the file's own bytes or an encoded WAV")
    audio_url: str
    spectrogram_url: str


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    uptime_s: float
    collections: dict[str, int] = Field(description="collection name -> revision being served")


class IndexRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    folder: str = Field(description="folder to index: under the server's --root (absolute, or relative to it)")
    prune: bool = Field(False, description="drop the collection's files under this folder that no longer exist")
    label_from: Literal["parent", "none"] | None = Field(
        None, description="labels of new files: 'parent' (the folder above each file), 'none'; "
                          "omitted: what earlier runs of this folder recorded, else 'parent'")


class JobOut(BaseModel):
    id: str
    kind: str
    collection: str
    params: dict
    state: Literal["queued", "running", "done", "failed"]
    created: float
    started: float | None
    finished: float | None
    elapsed_s: float | None
    progress: dict = Field(description="while running: files_done (files decoded and embedded so far)")
    result: dict | None
    error: str | None
    url: str


class DeleteOut(BaseModel):
    id: int
    deleted: int
    revision: int


MAP_MAX_CLUSTERS = 50  # as `audiosim map --clusters`


class MapPoint(BaseModel):
    id: int
    x: float
    y: float
    cluster: int = Field(description="index into clusters")
    colour: int = Field(description="index into legend")
    label: str | None
    path: str = Field(description="path relative to the folder it was indexed from")
    file_name: str
    offset_s: float = Field(description="start of the item in its file (segment collections)")
    audio_url: str


class MapCluster(BaseModel):
    name: str = Field(description="the commonest stored tags of its members, else their commonest labels, else 'cluster N'")
    size: int


class MapLegendEntry(BaseModel):
    name: str = Field(description="a label ('(none)': unlabelled) or a cluster name, as coloured_by says")
    colour: str = Field(description="CSS colour")
    count: int


class MapResponse(BaseModel):
    collection: str
    revision: int
    method: str = Field(description="the 2-D projection: umap, pca+tsne, pca or none (one item)")
    coloured_by: Literal["label", "cluster"]
    total: int = Field(description="items the collection holds")
    shown: int = Field(description="points in this map")
    sampled: bool = Field(description="true when the collection holds more than max_points items: the map is of a "
                                      "seeded random sample of max_points of them")
    max_points: int = Field(description="the most points this server maps")
    clusters: list[MapCluster]
    legend: list[MapLegendEntry]
    points: list[MapPoint]
