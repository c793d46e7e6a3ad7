#!/usr/bin/env bash
# The objectives study on real recorded music (issue 28), as run on 2026-12-06: every objective of the demo
# recipes, pre-training seeds SEEDS, at the demo budget (700 steps, m3bert_mini, fp32 as the demo recipes pin it),
# on the real-music pre-training corpus, then each encoder probed on the held-out soundtracks with m3bert.evaluate,
# and one report per encoder against the feature floor. Data: `make real-music PRETRAIN=megaglest-data,naev-data`
# (this session derived the same two folders from an earlier `make real-music` with derive_folders.py, which moves
# megaglest and naev from the probe set to the corpus without extracting the features again).
#   bash docs/results/objectives_real_music/run_study.sh  [DATA=data/real_music OUT=experiments/objectives_real_music SEEDS=0,1]
set -euo pipefail
DATA=${DATA:-data/real_music}
OUT=${OUT:-experiments/objectives_real_music}
SEEDS=${SEEDS:-0,1}
RECIPES=pretrain_demo,pretrain_demo_bestrq,pretrain_demo_multi_target,pretrain_demo_contrastive
python -m m3bert.train -m +experiment=$RECIPES dataset=manifest dataset.root="$DATA/pretrain" logger=none \
  trainer.progress=false seed="$SEEDS" hydra.sweep.dir="$OUT/pretrain"
for run in "$OUT"/pretrain/*/; do
  run=${run%/}
  tag=$(python -c "import json,sys; r=json.load(open(sys.argv[1] + '/run.json')); print(r['config']['name'], r['seed'], sep='_seed')" "$run")
  [ -f "$OUT/evaluate/$tag/summary.csv" ] || python -m m3bert.evaluate "model_path='$run'" data="$DATA/probe" \
    label=soundtrack group=work out="$OUT/evaluate/$tag" progress=false
  python -m m3bert.report "$OUT/evaluate/$tag/runs" out="$OUT/report/$tag" reference=embedding=features
done
python docs/results/objectives_real_music/summarise.py "$OUT/report" docs/results/objectives_real_music/summary.md
