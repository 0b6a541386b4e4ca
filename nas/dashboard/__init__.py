"""The Pareto dashboard of a study: figures, one self-contained page, a live server, a PNG.

Records are :func:`nas.search.records.trial_record` dicts, read through :mod:`nas.search.storage`
like every
other reader's. :mod:`~nas.dashboard.figures` (the Pareto front, learning curves, importances, the
recommendation) and :mod:`~nas.dashboard.distributions` (error EDFs, the paper's Table 3 and
Fig. 7 views) turn records into plotly figures on the helpers of :mod:`~nas.dashboard.plot`;
:mod:`~nas.dashboard.page` assembles them into one HTML page, :mod:`~nas.dashboard.server`
serves it live and :mod:`~nas.dashboard.screenshot` renders it to PNG. The names below are the
package's public face.
"""

from __future__ import annotations

from nas.dashboard.distributions import (
    PHASES,
    cardinality_figure,
    edf_figure,
    edf_groups,
    equal_complexity_sets,
    group_key,
    model_size_figure,
    phase_trials,
    spec_errors,
)
from nas.dashboard.figures import (
    METRICS,
    config_hover_text,
    config_points,
    figures,
    hover_key,
    importance_effects,
    importance_figure,
    learning_curves_figure,
    pareto_figure,
    phase_name,
    recommendation_figure,
)
from nas.dashboard.importance import Importances, param_importances
from nas.dashboard.page import (
    build_page,
    dashboard_page,
    default_out,
    load_study,
    records_from_study,
    script_json,
    study_importances,
    study_recommendation,
    study_state,
    table_rows,
    write_dashboard,
)
from nas.dashboard.plot import FINISHED, GL_POINTS, GROUPINGS, hover_text, waiting_text
from nas.dashboard.screenshot import CHROMIUM, CHROMIUM_FLAGS, screenshot
from nas.dashboard.server import is_loopback, make_server, serve

__all__ = [
    "CHROMIUM",
    "CHROMIUM_FLAGS",
    "FINISHED",
    "GL_POINTS",
    "GROUPINGS",
    "Importances",
    "METRICS",
    "PHASES",
    "build_page",
    "script_json",
    "cardinality_figure",
    "config_hover_text",
    "config_points",
    "dashboard_page",
    "default_out",
    "edf_figure",
    "edf_groups",
    "equal_complexity_sets",
    "figures",
    "group_key",
    "hover_key",
    "hover_text",
    "importance_effects",
    "importance_figure",
    "is_loopback",
    "learning_curves_figure",
    "load_study",
    "make_server",
    "model_size_figure",
    "param_importances",
    "pareto_figure",
    "phase_name",
    "phase_trials",
    "recommendation_figure",
    "records_from_study",
    "screenshot",
    "serve",
    "spec_errors",
    "study_importances",
    "study_recommendation",
    "study_state",
    "table_rows",
    "waiting_text",
    "write_dashboard",
]
