"""The exception hierarchy: one root, specific subclasses whose messages name the fix."""

from __future__ import annotations


class AudiosimError(Exception):
    """Root of every error audiosim raises on purpose."""


class AudioError(AudiosimError):
    """A recording could not be turned into a usable waveform."""


class AudioDecodeError(AudioError):
    """The file could not be decoded (not audio, truncated header, unsupported codec)."""


class EmptyAudioError(AudioError):
    """The file decoded to zero samples."""


class NonFiniteAudioError(AudioError):
    """The decoded samples contain NaN or infinity."""


class SilentAudioError(AudioError):
    """The recording is digital silence throughout: nothing is left to pool once silence is left out."""


class ExcerptTooShortError(AudiosimError):
    """An excerpt to locate is shorter than one analysis window of the collection's embedder."""


class UnknownEmbedderError(AudiosimError):
    """No embedder is registered under the requested name."""


class WeightsNotFoundError(AudiosimError):
    """Model weights could not be found locally and could not be downloaded."""


class WeightsFormatError(AudiosimError):
    """A weights file exists but is not the expected model/checkpoint."""


class DownloadError(AudiosimError):
    """A download failed or its content did not match the expected size or checksum."""


class DownloadStorageError(DownloadError):
    """A download could not be written to disk (full, read-only, no permission); its partial files are removed."""


class MissingDependencyError(AudiosimError):
    """An optional dependency (TensorFlow, torch, ...) is needed but not installed."""


class PoolingError(AudiosimError):
    """An unknown or malformed pooling specification."""


class CollectionError(AudiosimError):
    """A collection directory is missing, corrupt or was used inconsistently."""


class CollectionLockedError(CollectionError):
    """Another process holds the collection's writer lock."""


class CorruptCollectionError(CollectionError):
    """A file of the collection (part, index, manifest) is missing, truncated or does not match its checksum."""


class ItemNotFoundError(CollectionError):
    """No stored vector has the requested id."""


class CollectionChangingError(CollectionError):
    """The collection kept changing while a reader loaded it (writers committing); trying again succeeds."""


class CollectionMismatchError(CollectionError):
    """Vectors from a different embedder, pooling or weights were about to be mixed."""


class VectorIndexError(AudiosimError):
    """A vector index is missing, stale or inconsistent with its collection."""


class AnomalyModelError(AudiosimError):
    """An anomaly model cannot be fitted on the given vectors, or a saved one is unreadable or invalid."""


class DatasetError(AudiosimError):
    """A benchmark dataset is missing or malformed."""


class TrainingError(AudiosimError):
    """Model training failed (diverged, no data, bad configuration)."""


class EmbedderOptionError(AudiosimError):
    """An embedder was given an option it does not take."""


class InvalidOptionError(AudiosimError):
    """An option has a value it cannot take (the message names the option and what it takes)."""


class UnknownMetricError(InvalidOptionError, VectorIndexError):
    """A distance name that is neither ``cosine`` nor ``euclidean`` (``l2``); an index given one raises it too."""


class IngestFailuresError(AudiosimError):
    """``index --strict``: some files failed; every other file is committed. ``report`` is the run's IngestReport."""

    def __init__(self, message: str, report=None) -> None:
        super().__init__(message)
        self.report = report


class DeviceError(AudiosimError):
    """A compute device (e.g. CUDA) was requested but is not available."""


class NoTextEncoderError(AudiosimError):
    """Text search was asked of a collection whose embedder has no text encoder (only CLAP has one)."""


# ---------------------------------------------------------------------- moved here from the modules that raise them
class AudioLimitError(AudioError):
    """A header claims a sample rate, channel count or duration outside audiosim's limits (raise --max-duration, or
    split the file)."""


class AudioMemoryError(AudioError):
    """Decoding one file ran out of memory (index it on a machine with more memory, or split it)."""


class ManifestError(CollectionError):
    """``collection.json`` is unreadable, of an unknown format, or inconsistent (``audiosim repair`` rebuilds it)."""


class LabelCsvError(AudiosimError):
    """A labels CSV cannot be read, is malformed, or labels none of the files (the message names the columns it needs)."""


class NoClassifierHeadError(AudiosimError):
    """The embedder has no classifier head, so it gives no class scores or tags (use yamnet or panns for tags)."""


class UnknownTagError(InvalidOptionError):
    """A tag name that is not one of the classifier's class names; ``suggestions`` holds close ones."""

    def __init__(self, message: str, *, name: str = "", suggestions=()) -> None:
        super().__init__(message)
        self.name = name
        self.suggestions = list(suggestions)


class TagDataError(AudiosimError):
    """Class scores or stored tags with the wrong shape or values."""


class SegmentError(InvalidOptionError):
    """Segment settings that do not describe a grid (non-positive length, hop outside (0, length])."""


class RegionError(InvalidOptionError):
    """Hits that cannot be grouped (unknown mode, mismatched arrays, negative durations)."""


class LocateError(InvalidOptionError):
    """Mismatched vote arrays or settings of an excerpt search."""


class CompareError(AudiosimError):
    """Runs cannot be compared (missing files, different datasets, unknown variant)."""


class MetricsError(AudiosimError):
    """Inputs to a metric are inconsistent (shapes, protocol, distance)."""


class ServeConfigError(InvalidOptionError):
    """``audiosim serve`` was started with options that do not fit together."""


class WorkerError(AudiosimError):
    """A worker process or Ray actor failed to start or to finish (the message says how to retry; files committed so
    far are kept)."""


class EmbedderPluginError(AudiosimError):
    """An installed plug-in embedder (entry-point group audiosim.embedders) does not load or is not an Embedder."""
