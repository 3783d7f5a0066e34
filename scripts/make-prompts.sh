#!/usr/bin/env bash
# Regenerates prompts/*.wav (16 kHz mono, 16-bit) with espeak-ng. The files are committed;
# run this only to change a text. Each language menu prompt is spoken in its own language.
# espeak-ng has no Mongolian voice: the Mongolian text (Cyrillic) is read by the Russian
# voice, an intelligible approximation until a recorded prompt replaces it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
need_pkgs espeak-ng sox
mkdir -p prompts
say() { # name voice text
    espeak-ng -v "$2" -s 150 -w "prompts/$1.tmp.wav" "$3"
    sox "prompts/$1.tmp.wav" -r 16000 -c 1 -b 16 "prompts/$1.wav" gain -n -3 pad 0.1 0.2
    rm -f "prompts/$1.tmp.wav"
}
say menu-en en-us "For English, press 1."
say menu-zh cmn "中文服务，请按2。"
say menu-ja ja "にほんごは、さんを おしてください。"
say menu-vi vi "Tiếng Việt, xin bấm số 4."
say menu-mn ru "Монгол хэлээр бол 5 дарна уу."
say queue-wait-ko ko "잠시만 기다려 주십시오. 곧 상담사가 연결됩니다."
echo "prompts written: $(ls prompts/*.wav | wc -l)"
