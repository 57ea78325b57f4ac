// `npm pack` / `npm publish` run this last (the `postpack` script): it removes what
// scripts/prepack.js put into the package (prebuilds/, native/) once the tarball is written,
// so the working tree, where lib/native.js prefers build/, stays a development tree.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const pkg = path.resolve(__dirname, '..');
for (const d of ['prebuilds', 'native']) fs.rmSync(path.join(pkg, d), { recursive: true, force: true });
