"""A collection's on-disk names, defined once: the folders, and the patterns of part, vector-file,
index-folder and temporary-file names (file names within their folder, and the manifest's relative names)."""

from __future__ import annotations

import re

PARTS = "parts"
INDEX = "index"
_PART = r"part-[0-9A-Za-z_-]+"
_INDEX_DIR = r"r[0-9]+(-[0-9a-f]+)?"

PART_FILE = re.compile(rf"^{_PART}\.parquet$")  # in parts/
VEC_FILE = re.compile(rf"^{_PART}\.vec$")  # in parts/, beside its part
INDEX_DIR_FILE = re.compile(rf"^{_INDEX_DIR}$")  # in index/
TEMP_FILE = re.compile(r"^\..+\.tmp$")  # .<name>.<hex>.tmp: a write in progress (audiosim.files.atomic_path)
PART_NAME = re.compile(rf"^{PARTS}/{_PART}\.parquet$")  # a part as the manifest names it
INDEX_DIR_NAME = re.compile(rf"^{INDEX}/{_INDEX_DIR}$")  # an index folder as the manifest names it
