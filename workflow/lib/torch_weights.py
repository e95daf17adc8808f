"""Read a PyTorch state dict saved in the legacy (non-zip) format without torch and without running its code.

A .pth file is a pickle, and unpickling runs whatever the file names. This reader's unpickler resolves only the
names a state dict of tensors needs (an OrderedDict, the tensor and parameter rebuilders, the storage types) to
harmless stand-ins; any other name is refused before anything is called. The raw storage bytes that follow the
pickles are read with numpy.

The legacy layout (torch/serialization.py `_legacy_save`): four pickles (magic number, protocol version, system
info, the object with storages as persistent ids) and a pickled list of storage keys, then for each key in that
order an int64 element count and the storage's little-endian bytes.
"""

import collections
import io
import pickle
import zipfile

import numpy as np

from workflow.lib.cli import UserError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _Storage:
    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel = key, dtype, numel


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *_):
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *_):
    return data


ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): dtype for name, dtype in STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path):
        super().__init__(file)
        self.path, self.storages = path, {}

    def find_class(self, module, name):
        if (module, name) not in ALLOWED:
            raise UserError(
                f"{self.path}: refused: the file asks for {module}.{name}, which a file of weights never needs "
                "(a pickle that names other objects can run code when loaded)"
            )
        return ALLOWED[(module, name)]

    def persistent_load(self, saved_id):
        if not (isinstance(saved_id, tuple) and saved_id[:1] == ("storage",) and len(saved_id) >= 5):
            raise UserError(f"{self.path}: refused: unexpected persistent id {saved_id!r:.80}")
        _, dtype, key, _location, numel = saved_id[:5]
        if not (isinstance(dtype, type) and dtype in STORAGE_DTYPES.values()):
            raise UserError(f"{self.path}: refused: storage of unknown type {dtype!r:.80}")
        return self.storages.setdefault(key, _Storage(key, dtype, int(numel)))


def load_state_dict(path):
    """{name: numpy array} of a legacy-format .pth state dict; UserError for anything else."""
    data = open(path, "rb").read()
    if zipfile.is_zipfile(io.BytesIO(data)):
        raise UserError(f"{path}: saved in PyTorch's zip format; only the legacy format is read here")
    stream = io.BytesIO(data)
    try:
        if _RestrictedUnpickler(stream, path).load() != LEGACY_MAGIC:
            raise UserError(f"{path}: not a PyTorch weights file (no legacy magic number)")
        _protocol, _system = _RestrictedUnpickler(stream, path).load(), _RestrictedUnpickler(stream, path).load()
        unpickler = _RestrictedUnpickler(stream, path)
        state = unpickler.load()
        keys = _RestrictedUnpickler(stream, path).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise UserError(f"{path}: not a readable PyTorch weights file ({error})") from None
    storages = _read_storages(stream, keys, unpickler.storages, path)
    if not isinstance(state, collections.OrderedDict) or not all(isinstance(t, _Tensor) for t in state.values()):
        raise UserError(f"{path}: holds no state dict of tensors")
    return {name: _to_array(tensor, storages, path) for name, tensor in state.items()}


def _read_storages(stream, keys, wanted, path):
    arrays = {}
    for key in keys:
        if key not in wanted:
            raise UserError(f"{path}: storage {key!r:.40} is not used by any tensor")
        header = stream.read(8)
        count = int(np.frombuffer(header, "<i8")[0]) if len(header) == 8 else -1
        dtype = np.dtype(wanted[key].dtype).newbyteorder("<")
        raw = stream.read(max(count, 0) * dtype.itemsize)
        if count != wanted[key].numel or len(raw) != count * dtype.itemsize:
            raise UserError(f"{path}: storage {key!r:.40} is truncated or has the wrong size")
        arrays[key] = np.frombuffer(raw, dtype)
    return arrays


def _to_array(tensor, storages, path):
    storage = storages.get(tensor.storage.key)
    if storage is None:
        raise UserError(f"{path}: a tensor's storage is missing")
    itemsize = storage.dtype.itemsize
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride)) if all(tensor.size) else 0
    if tensor.offset < 0 or last >= max(len(storage), 1) or min(tensor.stride, default=0) < 0:
        raise UserError(f"{path}: a tensor reaches outside its storage")
    view = np.lib.stride_tricks.as_strided(
        storage[tensor.offset :], tensor.size, [s * itemsize for s in tensor.stride], writeable=False
    )
    return np.array(view, dtype=storage.dtype.newbyteorder("="))
