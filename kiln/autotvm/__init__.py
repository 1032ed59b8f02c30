"""AutoTVM on kiln: schedule templates with tunable knobs, tuned by measurement.

TVM's template tuning flow runs after changing the import line:
`@autotvm.template(name)` + `autotvm.get_config()` + `cfg.define_split / define_knob /
define_reorder / define_annotate`, `autotvm.task.create(name, args, target)`,
`autotvm.measure_option(builder=autotvm.LocalBuilder(), runner=autotvm.LocalRunner(...))`,
`autotvm.tuner.RandomTuner / GridSearchTuner / GATuner / XGBTuner(task).tune(...)` with
`autotvm.callback.log_to_file(path)`, and `autotvm.apply_history_best(path)` around the
template call that builds the tuned kernel. Candidates are measured by the auto-scheduler's
builder and runner (parallel compiles, a worker process, timeouts, output checks).
"""

from . import callback, record, task, tuner
from .config import ConfigEntity, ConfigSpace, FallbackConfigEntity
from .measure import (
    LocalBuilder,
    LocalRunner,
    MeasureErrorNo,
    MeasureInput,
    MeasureResult,
    RPCRunner,
    measure_option,
)
from .record import ApplyHistoryBest, apply_history_best
from .task import ApplyConfig, DispatchContext, FallbackContext, get_config, template

__all__ = ["ApplyConfig", "ApplyHistoryBest", "ConfigEntity", "ConfigSpace", "DispatchContext",
           "FallbackConfigEntity", "FallbackContext", "LocalBuilder", "LocalRunner",
           "MeasureErrorNo", "MeasureInput", "MeasureResult", "RPCRunner",
           "apply_history_best", "callback", "get_config", "measure_option", "record", "task",
           "template", "tuner"]
