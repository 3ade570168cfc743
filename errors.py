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


class UnknownEmbedderError(AudiosimError):
    """No embedder is registered under the requested name."""


class WeightsNotFoundError(AudiosimError):
    """Model weights could not be found locally and could not be downloaded."""


class WeightsFormatError(AudiosimError):
    """A weights file exists but is not the expected model/checkpoint."""


class DownloadError(AudiosimError):
    """A download failed or its content did not match the expected size or checksum."""


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
