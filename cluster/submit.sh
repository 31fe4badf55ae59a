#!/usr/bin/env bash
# Submit an hft_ray run as a Ray job, with the repository as its working_dir and
# cluster/runtime_env.yaml as its runtime environment.
#
# Usage: cluster/submit.sh [ray job submit options...] [-- hft-ray run options...]
#   cluster/submit.sh -- --duration 30
#   cluster/submit.sh --address http://127.0.0.1:8265 --no-wait -- --duration 30 --report /tmp/r.json
#
# The address is --address, else $RAY_API_SERVER_ADDRESS or $RAY_ADDRESS, else
# http://127.0.0.1:8265 (the dashboard of `ray start --head` on this machine). Without
# --no-wait, this streams the job's logs and exits 0 only if the job SUCCEEDED.
# Against a cluster with token auth, export RAY_AUTH_MODE=token (and RAY_AUTH_TOKEN unless the
# token is in ~/.ray/auth_token).
set -euo pipefail
cd "$(dirname "$0")/.."

ray_opts=()
while (($#)); do
  if [[ $1 == -- ]]; then
    shift
    break
  fi
  ray_opts+=("$1")
  shift
done

has_address=false
for opt in "${ray_opts[@]}"; do
  [[ $opt == --address || $opt == --address=* ]] && has_address=true
done
if ! $has_address && [[ -z ${RAY_API_SERVER_ADDRESS:-} && -z ${RAY_ADDRESS:-} ]]; then
  ray_opts+=(--address http://127.0.0.1:8265)
fi

exec ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml "${ray_opts[@]}" \
  -- hft-ray run "$@"
