#!/usr/bin/env bash
# Regenerate the README's screenshot (docs/dashboard.png) from a real search on the CIFAR-10
# JPEG tarball, then write its long caption between the markers in docs/guide.md (the README's
# caption stays short) with the exact commands run and the numbers read back from the study.
# Prints the caption too.
#
#   scripts/readme_screenshot.sh                  # 12 trials, about 15-20 min on 2 CPU cores
#   TRIALS=30 scripts/readme_screenshot.sh --confirm 3   # extra arguments go to `search`
#   SHOT_ONLY=1 scripts/readme_screenshot.sh ARGS         # re-shoot the study in runs/readme.db
#                                  # (after a dashboard change), keeping the search's recorded time
#
# Needs the folder dataset (--dataset folder) and Chromium (scripts/install_chromium.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
DATA=${DATA:-../shared/data/cifar10-jpg.tar.gz}
TRIALS=${TRIALS:-12}
STUDY=${STUDY:-readme-cifar10}
DB=runs/readme.db
if [ ! -e "$DATA" ]; then
    echo "readme_screenshot: no CIFAR-10 tarball at $DATA (set DATA=...)" >&2
    exit 2
fi
mkdir -p runs docs
SEARCH=(search --trials "$TRIALS" --study "$STUDY" --storage "sqlite:///$DB"
        --dataset folder --data-dir "$DATA" "$@")
DASH=(dashboard --study "$STUDY" --storage "sqlite:///$DB" --out runs/readme-dashboard.html
      --screenshot docs/dashboard.png)
if [ -n "${SHOT_ONLY:-}" ]; then
    if [ ! -e "$DB" ] || [ ! -e runs/readme-seconds.txt ]; then
        echo "readme_screenshot: SHOT_ONLY needs the study of an earlier run ($DB)" >&2
        exit 2
    fi
else
    rm -f "$DB"  # a fresh study: the caption describes exactly this run
    start=$(date +%s)
    "$BIN/resnext-nas" "${SEARCH[@]}"
    echo $(( $(date +%s) - start )) > runs/readme-seconds.txt
fi
seconds=$(cat runs/readme-seconds.txt)
"$BIN/resnext-nas" "${DASH[@]}"
"$BIN/python" - "$STUDY" "sqlite:///$DB" "$seconds" "resnext-nas ${SEARCH[*]}" \
    "resnext-nas ${DASH[*]}" <<'PY'
"""Fill the guide's caption from the study itself: every number is read back, none typed."""
import re
import sys
from pathlib import Path

from nas import dashboard as dash
from nas.stats.recommend import format_p_best
from nas.search.records import best_config, trial_rows

study_name, storage, seconds, search, shot = sys.argv[1:]
study = dash.load_study(study_name, storage)
rows = trial_rows(study)
done = [r for r in rows if r["state"] == "COMPLETE"]
rec = dash.study_recommendation(study)
if rec is not None:
    lo, hi = rec["ci95"]
    ci = "" if lo is None else f", 95% CI {100 * lo:.1f}-{100 * hi:.1f}%"
    answer = (
        f"the confirmed recommendation is {rec['notation']} at {100 * rec['mean_accuracy']:.1f}% "
        f"over {rec['seeds']} seeds{ci} (P(best) {format_p_best(rec['p_best'])})"
    )
else:
    best = best_config(rows)
    if best is not None:
        answer = (
            f"the best configuration by mean over its {len(best['trials'])} seeds is "
            f"{best['spec']} at {100 * best['mean_accuracy']:.1f}%"
        )
    else:
        top = max(done, key=lambda r: r["val_accuracy"])
        answer = f"the best single trial is {top['spec']} at {100 * top['val_accuracy']:.1f}%"
minutes, secs = divmod(int(seconds), 60)
caption = (
    f"*The dashboard of a real {len(rows)}-trial study on CIFAR-10 (the JPEG tarball), "
    f"{len(done)} complete, made by `scripts/readme_screenshot.sh`: `{search}` "
    f"({minutes}m{secs:02d}s here), then `{shot}`; {answer} (chance is 10%).*"
)
guide = Path("docs/guide.md")
text = guide.read_text(encoding="utf-8")
new, count = re.subn(
    r"(<!-- screenshot-caption -->\n).*?(\n<!-- /screenshot-caption -->)",
    lambda m: m.group(1) + caption + m.group(2),
    text,
    flags=re.S,
)
if count != 1:
    sys.exit("readme_screenshot: docs/guide.md lacks the screenshot-caption markers")
guide.write_text(new, encoding="utf-8")
print(caption)
PY
