#!/usr/bin/env bash
# The objectives study on real recorded music (issue 28): every objective of the demo recipes, pre-training seeds
# SEEDS, at STEPS optimizer steps (700, the demo budget, by default; m3bert_mini, fp32 as the demo recipes pin it), on
# the real-music pre-training corpus (CORPUS=demo: on the demo corpus instead, `prepare dataset=demo`), then each
# encoder probed on the held-out soundtracks with m3bert.evaluate, one report per encoder against the feature floor,
# and the summary over all encoders in OUT. Reruns skip finished pre-training runs and evaluations.
# Data: `make real-music PRETRAIN=megaglest-data,naev-data` (this study derived the same two folders from an earlier
# `make real-music` with derive_folders.py, which moves megaglest and naev from the probe set to the corpus without
# extracting the features again).
#   bash docs/results/objectives_real_music/run_study.sh
#   [DATA=data/real_music OUT=experiments/objectives_real_music SEEDS=0,1,2 STEPS=700 CORPUS=real RECIPES=...
#    RESULTS=docs/results/objectives_real_music TRAIN=1]
# (This session's demo-corpus reconstruction encoder is `make demo`'s pre-training run, the same recipe and seed,
# linked in as OUT/pretrain_demo_700/make_demo and evaluated with TRAIN=0.)
set -euo pipefail
DATA=${DATA:-data/real_music}
OUT=${OUT:-experiments/objectives_real_music}
SEEDS=${SEEDS:-0,1,2}
STEPS=${STEPS:-700}
CORPUS=${CORPUS:-real}
RESULTS=${RESULTS:-docs/results/objectives_real_music}
RECIPES=${RECIPES:-pretrain_demo,pretrain_demo_bestrq,pretrain_demo_multi_target,pretrain_demo_contrastive}
case "$CORPUS" in
  real) corpus=(dataset=manifest dataset.root="$DATA/pretrain") ;;
  demo) corpus=() ;;  # the recipes' own dataset=demo
  *) echo "run_study.sh: CORPUS=$CORPUS is not a corpus; use CORPUS=real or CORPUS=demo" >&2; exit 2 ;;
esac
if [ "${TRAIN:-1}" != 0 ]; then  # TRAIN=0: only evaluate and report the pre-training runs already in OUT
  python -m m3bert.train -m +experiment="$RECIPES" "${corpus[@]}" trainer.max_steps="$STEPS" logger=none \
    trainer.progress=false seed="$SEEDS" hydra.sweep.dir="$OUT/pretrain_${CORPUS}_${STEPS}"
fi
for run in "$OUT"/pretrain_*/*/; do
  run=${run%/}
  [ -f "$run/metrics.json" ] || continue  # not finished (another sweep of this study may be running)
  # <recipe>[_<corpus>_<steps> when not the real corpus at 700 steps]_seed<N>: summarise.py groups on the part
  # before _seed
  tag=$(python -c "
import json, sys
run = json.load(open(sys.argv[1] + '/run.json'))
corpus = 'demo' if run['config']['dataset'].get('source') else 'real'
steps = run['config']['trainer']['max_steps']
budget = '' if (corpus, steps) == ('real', 700) else f'_{corpus}_{steps}'
print(f\"{run['config']['name']}{budget}_seed{run['seed']}\")" "$run")
  [ -f "$OUT/evaluate/$tag/summary.csv" ] || python -m m3bert.evaluate "model_path='$run'" data="$DATA/probe" \
    label=soundtrack group=work out="$OUT/evaluate/$tag" progress=false
  [ -f "$OUT/report/$tag/results.csv" ] || \
    python -m m3bert.report "$OUT/evaluate/$tag/runs" out="$OUT/report/$tag" reference=embedding=features
done
mkdir -p "$RESULTS/report"
cp -r "$OUT/report/." "$RESULTS/report/"
python docs/results/objectives_real_music/summarise.py "$RESULTS/report" "$RESULTS/summary.md"
