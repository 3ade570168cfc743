"""Models: embedders (a lazy registry), pooling of frame vectors, weights lookup and download,
class maps and tags, and the GLU-ConvVAE. Frameworks (TensorFlow, torch) load only when a model is built."""

from audiosim.engine.models.embedders import Embedder, EmbedderInfo, make_embedder
from audiosim.engine.models.pooling import PoolingSpec, pool
from audiosim.engine.models.tags import ClassMap, Tag

__all__ = ["ClassMap", "Embedder", "EmbedderInfo", "PoolingSpec", "Tag", "make_embedder", "pool"]
