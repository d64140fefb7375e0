#!/usr/bin/env node
import '../dist/cli/mta-queue.js';
