// browser.js: how the e2e scripts start Debian's chromium through npm
// playwright-core — headless, no sandbox (tests run as root), and none of
// the background traffic (updates, sync, QUIC) that would leave loopback.
'use strict';
const { chromium } = require('playwright-core');

const options = {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
};

// launch starts a browser; close it when done.
exports.launch = () => chromium.launch(options);

// launchPersistent starts a browser with a profile in dir, so that state
// such as an EventSource's reconnects survives navigation.
exports.launchPersistent = (dir) => chromium.launchPersistentContext(dir, options);
