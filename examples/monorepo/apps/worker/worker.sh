#!/bin/sh
exec cat /app/worker.conf
