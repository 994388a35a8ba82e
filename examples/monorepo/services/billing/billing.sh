#!/bin/sh
cat /app/billing.state
