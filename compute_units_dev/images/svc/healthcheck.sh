#!/bin/sh
[ "$(cat /HEALTHY)" = yes ]
