#!/bin/sh
# Makes the sign-language queue's default waiting picture: a 2-second loop at 320x240,
# 10 frames a second, one keyframe at its start (the loop restarts on a keyframe), in both
# codecs the engine relays. The shipped files are this script's output; an operator
# replaces them with a real clip through [video] waiting_vp8 / waiting_h264.
#   VP8: IVF, no alt-ref frames (every frame is shown).
#   H.264: Annex B, Constrained Baseline, level 1.3, slices of at most 1,100 bytes (so each
#   NAL unit fits one RTP packet, for packetization mode 0 too).
# Needs ffmpeg (Debian `ffmpeg`) and the DejaVu fonts.
set -eu
out=${1:-prompts}
font=/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf
src="color=c=0x1d3557:s=320x240:r=10:d=2,format=yuv420p,\
drawtext=fontfile=$font:text='Please wait':fontcolor=white:fontsize=30:x=(w-tw)/2:y=70,\
drawtext=fontfile=$font:text='Sign-language counselling':fontcolor=0xf1faee:fontsize=16:x=(w-tw)/2:y=120,\
drawbox=x=40:y=170:w=240:h=12:color=0x457b9d:t=fill,\
drawtext=fontfile=$font:text='●':fontcolor=0xe63946:fontsize=22:x='36+t*115':y=164"
ffmpeg -hide_banner -loglevel error -y -f lavfi -i "$src" \
    -c:v libvpx -b:v 120k -g 20 -keyint_min 20 -auto-alt-ref 0 -lag-in-frames 0 \
    -f ivf "$out/waiting-sign.ivf"
ffmpeg -hide_banner -loglevel error -y -f lavfi -i "$src" \
    -c:v libx264 -profile:v baseline -level 1.3 -b:v 120k -pix_fmt yuv420p \
    -x264-params keyint=20:min-keyint=20:scenecut=0:bframes=0:slice-max-size=1100:repeat-headers=1 \
    -bsf:v filter_units=remove_types=6 -f h264 "$out/waiting-sign.h264"
