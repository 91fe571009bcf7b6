"""Reading GGUF files: metadata, and tensors dequantized to torch.

The file is memory-mapped and parsed in one pass (the `gguf` package supplies the
type constants and block sizes); the block formats below are dequantized with
vectorized torch, several times faster than the package's numpy reference. Other
quantized types fall back to `gguf.quants.dequantize`.

Block layouts (32 weights a block; nibble j holds weight j, the high nibble weight j+16):
    Q8_0: d (f16), q[32] (int8)           w = d·q
    Q4_0: d (f16), nibbles[16]            w = d·(q − 8)
    Q4_1: d (f16), m (f16), nibbles[16]   w = d·q + m
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from tokenloom.errors import CorruptModelFile

BLOCK = 32


def _f16(raw: torch.Tensor) -> torch.Tensor:
    """Little-endian half floats from a (..., 2) uint8 tensor, as float32 (..., 1)."""
    return raw.contiguous().view(torch.float16).float()


def _nibbles(raw: torch.Tensor) -> torch.Tensor:
    """(N, 16) uint8 -> (N, 32) values 0..15, low nibbles first."""
    return torch.cat([raw & 0x0F, raw >> 4], dim=-1).float()


def dequantize_q8_0(blocks: torch.Tensor) -> torch.Tensor:
    d = _f16(blocks[:, :2])  # (N, 1)
    return d * blocks[:, 2:].contiguous().view(torch.int8).float()  # (N, 32)


def dequantize_q4_0(blocks: torch.Tensor) -> torch.Tensor:
    d = _f16(blocks[:, :2])  # (N, 1)
    return d * (_nibbles(blocks[:, 2:]) - 8.0)  # (N, 32)


def dequantize_q4_1(blocks: torch.Tensor) -> torch.Tensor:
    d, m = _f16(blocks[:, :2]), _f16(blocks[:, 2:4])  # (N, 1) each
    return d * _nibbles(blocks[:, 4:]) + m  # (N, 32)


_BLOCK_DEQUANT = {"Q8_0": (34, dequantize_q8_0), "Q4_0": (18, dequantize_q4_0), "Q4_1": (20, dequantize_q4_1)}


def tensor_to_torch(tensor: "TensorInfo") -> torch.Tensor:
    """One GGUF tensor as a float32 torch tensor in PyTorch's (out, in) order."""
    with warnings.catch_warnings():  # the bytes are a read-only map, which torch warns about; we only read
        warnings.simplefilter("ignore", UserWarning)
        return _to_torch(tensor)


def _to_torch(tensor: "TensorInfo") -> torch.Tensor:
    kind, data, shape = tensor.kind, tensor.data, tensor.shape
    if kind in ("F32", "F16"):
        return torch.from_numpy(data.view(np.float32 if kind == "F32" else np.float16).astype(np.float32)).reshape(shape)
    if kind == "BF16":
        raw = torch.from_numpy(data.view(np.uint16).astype(np.int32) << 16)
        return raw.view(torch.float32).reshape(shape)
    if kind in _BLOCK_DEQUANT:
        size, dequantize = _BLOCK_DEQUANT[kind]
        blocks = torch.from_numpy(data).view(-1, size)  # (N, bytes)
        return dequantize(blocks).reshape(shape)
    from gguf.quants import dequantize

    rows = data.reshape(-1, tensor.row_bytes)
    return torch.from_numpy(dequantize(rows, GGMLQuantizationType[kind]).astype(np.float32)).reshape(shape)


@dataclass
class TensorInfo:
    name: str
    kind: str  # the GGML type name: F32, Q4_1, ...
    shape: tuple[int, ...]  # PyTorch order: (out, in)
    data: np.ndarray  # the raw bytes, a read-only view of the file
    row_bytes: int


class GGUFFile:
    """Metadata and tensors of one GGUF file; a clear error for a file that is not one.

    The layout (little-endian): magic "GGUF", version u32, tensor count u64, metadata
    count u64; then key/value pairs (string key, u32 value type, value); then one
    record per tensor (name, dims, GGML type, offset); then, aligned, the tensor data.
    The value types and block sizes come from the `gguf` package's constants; the
    parsing is done here, in one pass over a memory map, because the package's
    reader builds a numpy view per vocabulary entry and takes seconds on a 49k vocabulary.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.buffer = np.memmap(self.path, dtype=np.uint8, mode="r")
            self._parse()
        except CorruptModelFile:
            raise
        except Exception as error:  # a damaged file fails in many ways; say which file and why
            raise CorruptModelFile(
                f"{self.path} is not a readable GGUF file ({type(error).__name__}: {error}); "
                "it may be truncated or not a GGUF model at all"
            ) from None

    # -- parsing ---------------------------------------------------------------
    def _parse(self) -> None:
        reader = _Cursor(memoryview(self.buffer))
        if reader.take(4) != b"GGUF":
            raise ValueError("the file does not start with the GGUF magic bytes")
        self.version = reader.unpack("<I")
        if self.version not in (2, 3):
            raise ValueError(f"GGUF version {self.version} is not supported (2 and 3 are)")
        n_tensors, n_fields = reader.unpack("<Q"), reader.unpack("<Q")
        self.fields = {}
        for _ in range(n_fields):
            key = reader.string()
            self.fields[key] = reader.value(reader.unpack("<I"))
        infos = [self._tensor_record(reader) for _ in range(n_tensors)]
        alignment = int(self.fields.get("general.alignment", 32))
        start = -(-reader.offset // alignment) * alignment
        self.tensors = {info.name: info for info in (self._tensor(start, *record) for record in infos)}

    @staticmethod
    def _tensor_record(reader: "_Cursor") -> tuple:
        name = reader.string()
        dims = [reader.unpack("<Q") for _ in range(reader.unpack("<I"))]
        return name, dims, reader.unpack("<I"), reader.unpack("<Q")

    def _tensor(self, start: int, name: str, dims: list[int], kind: int, offset: int) -> TensorInfo:
        qtype = GGMLQuantizationType(kind)
        block, type_size = GGML_QUANT_SIZES[qtype]
        count = int(np.prod(dims)) if dims else 1
        size = count // block * type_size
        begin = start + offset
        if begin + size > self.buffer.size:
            raise CorruptModelFile(f"{self.path} is truncated: tensor {name} runs past the end of the file")
        shape = tuple(int(n) for n in reversed(dims))  # GGUF lists the fastest dimension first
        row_bytes = dims[0] // block * type_size if dims else type_size
        return TensorInfo(name, qtype.name, shape, self.buffer[begin : begin + size], row_bytes)

    # -- access --------------------------------------------------------------------
    def field(self, key: str, default=None):
        return self.fields.get(key, default)

    def string_array(self, key: str) -> list[str]:
        return list(self.fields.get(key, []))

    def int_array(self, key: str) -> list[int]:
        return [int(v) for v in self.fields.get(key, [])]

    def tensor(self, name: str) -> torch.Tensor:
        """A tensor dequantized to float32."""
        if name not in self.tensors:
            raise CorruptModelFile(f"{self.path} has no tensor {name!r}")
        return tensor_to_torch(self.tensors[name])

    def blocks(self, name: str) -> "Blocks | torch.Tensor":
        """A tensor in its quantized blocks where native precision computes on them, else float32."""
        from tokenloom.model.blocks import BYTES
        from tokenloom.model.quant import Blocks, native_kinds

        info = self.tensors.get(name)
        if info is None or info.kind not in native_kinds() or len(info.shape) != 2:
            return self.tensor(name)
        size = BYTES[info.kind]
        with warnings.catch_warnings():  # a read-only map; the blocks are copied before any write
            warnings.simplefilter("ignore", UserWarning)
            data = torch.from_numpy(info.data).view(info.shape[0], -1, size)  # (rows, blocks, bytes)
        return Blocks(info.kind, data)


_SCALARS = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H", GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i", GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d",
}


class _Cursor:
    """Reads little-endian values from a memoryview, advancing an offset."""

    def __init__(self, view: memoryview):
        self.view, self.offset = view, 0

    def take(self, size: int) -> bytes:
        end = self.offset + size
        if end > len(self.view):
            raise ValueError("unexpected end of file while reading metadata")
        chunk, self.offset = bytes(self.view[self.offset : end]), end
        return chunk

    def unpack(self, fmt: str):
        value = struct.unpack_from(fmt, self.view, self.offset)[0]
        self.offset += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        return self.take(self.unpack("<Q")).decode("utf-8", errors="replace")

    def value(self, kind: int):
        kind = GGUFValueType(kind)
        if kind == GGUFValueType.STRING:
            return self.string()
        if kind == GGUFValueType.ARRAY:
            item, count = GGUFValueType(self.unpack("<I")), self.unpack("<Q")
            if item in _SCALARS:  # numbers: one numpy read
                dtype = np.dtype(_SCALARS[item])
                values = np.frombuffer(self.view, dtype=dtype, count=count, offset=self.offset)
                self.offset += dtype.itemsize * count
                return values.tolist()
            return [self.value(item) for _ in range(count)]
        return self.unpack(_SCALARS[kind])
