#!/usr/bin/env node
import '../dist/cli/mta-server.js';
