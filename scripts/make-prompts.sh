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
say() { # name voice text [rate]
    espeak-ng -v "$2" -s 150 -w "prompts/$1.tmp.wav" "$3"
    sox "prompts/$1.tmp.wav" -r "${4:-16000}" -c 1 -b 16 "prompts/$1.wav" gain -n -3 pad 0.1 0.2
    rm -f "prompts/$1.tmp.wav"
}
# Short announcement parts are stored at 8 kHz: telephone bandwidth, half the size.
say8() { say "$1" "$2" "$3" 8000; }
say menu-en en-us "For English, press 1."
say menu-zh cmn "中文服务，请按2。"
say menu-ja ja "にほんごは、さんを おしてください。"
say menu-vi vi "Tiếng Việt, xin bấm số 4."
say menu-mn ru "Монгол хэлээр бол 5 дарна уу."
say queue-wait-ko ko "잠시만 기다려 주십시오. 곧 상담사가 연결됩니다."
# Queue announcements (off unless a queue sets announce_position / announce_wait): a lead-in,
# then a number, per language. Korean reads "3번" as "삼 번" (a queue number) and "3분"
# as "삼 분" (minutes).
say8 queue-position-ko ko "고객님의 대기 순번은"
say8 queue-ewt-ko ko "예상 대기 시간은 약"
say8 queue-position-en en-us "Your position in the queue is"
say8 queue-ewt-en en-us "Your expected wait is about"
for n in $(seq 1 10); do
    say8 "pos-ko-$n" ko "${n}번입니다."
    say8 "min-ko-$n" ko "${n}분입니다."
    say8 "pos-en-$n" en-us "number ${n}."
    if [ "$n" = 1 ]; then say8 "min-en-$n" en-us "1 minute."; else say8 "min-en-$n" en-us "${n} minutes."; fi
done
say8 pos-ko-many ko "10번 이후입니다."
say8 min-ko-many ko "10분 이상입니다."
say8 pos-en-many en-us "after number 10."
say8 min-en-many en-us "more than 10 minutes."
# Outside a foreign-language queue's hours (09:00-22:00 by default): said in that language,
# then the caller waits for a Korean-speaking counsellor.
say8 closed-en en-us "English counselling is open from 9 a.m. to 10 p.m. Please hold for the next counsellor."
say8 closed-zh cmn "中文咨询时间为上午九点至晚上十点。请稍候，我们将为您转接其他咨询员。"
say8 closed-ja ja "にほんごのそうだんは、ごぜんくじから、ごごじゅうじまでです。しょうしょうおまちください。"
say8 closed-vi vi "Tư vấn tiếng Việt từ 9 giờ sáng đến 10 giờ tối. Xin vui lòng chờ tư vấn viên."
# (ө and ү written as о and у: the Russian voice spells out letters it does not know.)
say8 closed-mn ru "Монгол хэлний зовлогоо оглооний 9 цагаас оройн 10 цаг хуртэл. Тур хулээнэ уу."
# The same, for queues with a callback digit (and an outbound trunk): the caller may ask to
# be called back when the queue opens.
say8 closed-callback-en en-us "English counselling is open from 9 a.m. to 10 p.m. To be called back in English when we open, press star. Or hold for the next counsellor."
say8 closed-callback-zh cmn "中文咨询时间为上午九点至晚上十点。如需在开放时间回电，请按星号键。或请稍候，我们将为您转接其他咨询员。"
say8 closed-callback-ja ja "にほんごのそうだんは、ごぜんくじから、ごごじゅうじまでです。あいてから おでんわを ごきぼうのかたは、こめじるしを おしてください。または、しょうしょうおまちください。"
say8 closed-callback-vi vi "Tư vấn tiếng Việt từ 9 giờ sáng đến 10 giờ tối. Để được gọi lại khi mở cửa, xin bấm phím sao. Hoặc xin vui lòng chờ tư vấn viên."
say8 closed-callback-mn ru "Монгол хэлний зовлогоо оглооний 9 цагаас оройн 10 цаг хуртэл. Буцааж залгуулах бол од товчийг дарна уу. Эсвэл тур хулээнэ уу."
# The callback offer to a caller who has waited (callback_offer_after_s, or at max wait).
say8 callback-offer-ko ko "기다리신 순서를 유지한 채 상담사의 전화를 받으시려면 별표를 눌러 주십시오."
say8 callback-offer-en en-us "To keep your place in line and be called back, press star."
# The post-call survey (off unless a queue sets survey = "survey-ko").
say8 survey-ko ko "상담이 만족스러우셨다면 5번, 보통이면 3번, 불만족이면 1번을 눌러 주십시오."
echo "prompts written: $(ls prompts/*.wav | wc -l)"
