// ESLint for Server1's own JavaScript: ES modules in the browser (server1/static/js). The vendored
// onnxruntime-web under server1/static/vendor is npm's build, not ours to lint.
import js from '@eslint/js';
import globals from 'globals';

export default [
  { ignores: ['server1/static/vendor/**'] },
  js.configs.recommended,
  {
    files: ['server1/static/js/**/*.js'],
    languageOptions: { ecmaVersion: 2024, sourceType: 'module', globals: globals.browser },
  },
];
