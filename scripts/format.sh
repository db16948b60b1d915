#!/usr/bin/env bash
# Formats every C++ source of ours in place with .clang-format.
set -euo pipefail
cd "$(dirname "$0")/.."
git ls-files '*.h' '*.cpp' | xargs "${CLANG_FORMAT:-clang-format}" -i
