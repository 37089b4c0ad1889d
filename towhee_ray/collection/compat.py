"""Towhee 0.9 DataCollection names that towhee_ray does not provide.

``dc.<name>`` is otherwise taken for a hub operator namespace; for these names that would
end in a misleading "operator not found", so they raise an ``AttributeError`` saying what
they are instead.
"""
from __future__ import annotations

from typing import Optional

# The public names of Towhee 0.9.0's DataCollection and DataFrame (dir() of both in a
# towhee==0.9.0 install, plus the instance attributes feature_summarize and plot).
TOWHEE_09_NAMES = frozenset('''
    ModeFlag api append as_entity as_function as_json as_raw as_str batch clear cmap combine
    compile_dag config control_plane copy count create_arrow_table df drop_empty dropna
    exception_safe extend feature_summarize fill_empty fill_entity filter flatten from_df
    from_glob get_backend get_chunksize get_config get_executor get_formate_priority
    get_num_worker get_pipeline_config get_state group_by head image_imshow insert is_stream
    jit_resolve map mmap mode netx notify_consumed parse_json pipeline_config plot pmap pop
    range ray_resolve ray_start read_audio read_camera read_csv read_json read_video read_zip
    register_dag remove rename replace report resolve reverse rolling run safe sample select
    select_from serve set_chunksize set_evaluating set_format_priority set_jit set_parallel
    set_state set_training show shuffle smap sort split split_train_test stream to_column
    to_csv to_dc to_df to_list to_video unstream with_metrics zip
'''.split())

# What to use instead, where towhee_ray has an answer.
_INSTEAD = {
    'to_column': 'rows stay entities; column storage (pyarrow) is not provided',
    'get_executor': 'use get_backend() and get_num_worker()',
    'ray_start': 'use towhee_ray.connect() or ray.init(...) before running the chain',
    'serve': 'serve a Towhee 1.x pipeline instead',
    'api': 'serve a Towhee 1.x pipeline instead',
    'smap': 'use map() with an operator',
}


def missing_method_error(name: str) -> Optional[AttributeError]:
    """The error for a Towhee 0.9 DataCollection name that is not provided, else None.

    >>> missing_method_error('to_video')
    AttributeError("Towhee 0.9's DataCollection method to_video is not provided by towhee_ray")
    >>> missing_method_error('image_decode') is None
    True
    """
    if name not in TOWHEE_09_NAMES:
        return None
    instead = _INSTEAD.get(name)
    message = f"Towhee 0.9's DataCollection method {name} is not provided by towhee_ray"
    return AttributeError(f'{message}: {instead}' if instead else message, name=name)
