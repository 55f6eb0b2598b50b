#!/usr/bin/env bash
# The published setups (configs/published/) shortened to CPU size for docs/reproduction.md: the
# CIFAR-10 ones from the JPEG folder (the MNIST ones need TensorFlow Datasets and internet, which
# this machine lacks), at width 0.125 (a ResNet-18 / VGG-11 with 8..64 channels), 50 train and
# 20 test images per class, 12 epochs with the learning-rate steps scaled to them. Their numbers
# are NOT comparable with the published ones in size; the report prints both side by side.
#
#   bash tools/repro_published_cpu.sh [OUT] [DATA]; sqnc report OUT
set -u
OUT=${1:-outputs/repro}
DATA=${2:-../shared/data/cifar10-jpeg.zip}
SQNC=${SQNC:-sqnc}
export TF_CPP_MIN_LOG_LEVEL=3
run() { echo "=== $(date -u +%H:%M:%S) sqnc run $*"; nice -n 10 "$SQNC" run "$@" --out "$OUT" || echo "exit $?"; }
SHORT=(--set data.source=folder --data-dir "$DATA" --set data.train_per_class=50 --set data.test_per_class=20 --set model.width=0.125 --set optim.epochs=12)
run configs/published/zhu2021_resnet18_cifar10_ce.yaml "${SHORT[@]}" --set 'optim.milestones=[3,6,9]' --set 'track.nc_epochs=[0,1,2,4,6,9,12]' --set 'track.margin_epochs=[0,12]'
run configs/published/rangamani2023_vgg11_cifar10_mse.yaml "${SHORT[@]}" --set 'optim.milestones=[4,8]'
echo "=== $(date -u +%H:%M:%S) done"
