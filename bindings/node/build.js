#!/usr/bin/env node
// Builds the native addon with cargo (no prebuilt downloads) and copies the cdylib next to
// this file as `sequential-flow.node`. `node build.js --release` builds the optimized one.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const here = __dirname;
const release = process.argv.includes('--release');
const targetDir = process.env.CARGO_TARGET_DIR || path.join(here, '..', '..', 'target');
const args = ['build', '--manifest-path', path.join(here, 'Cargo.toml'), '--target-dir', targetDir];
if (release) args.push('--release');
if (process.argv.includes('--locked')) args.push('--locked');
execFileSync(process.env.CARGO || 'cargo', args, { stdio: 'inherit' });

const lib = { linux: 'libsequential_flow_node.so', darwin: 'libsequential_flow_node.dylib', win32: 'sequential_flow_node.dll' }[process.platform];
if (!lib) throw new Error(`unsupported platform ${process.platform}: expected linux, darwin or win32`);
const built = path.join(targetDir, release ? 'release' : 'debug', lib);
const out = path.join(here, 'sequential-flow.node');
// Copy to a temporary name and rename, so a running process never loads a half-written file.
fs.copyFileSync(built, out + '.tmp');
fs.renameSync(out + '.tmp', out);
console.log(`built ${path.relative(process.cwd(), out)} (${release ? 'release' : 'debug'}) from ${built}`);
