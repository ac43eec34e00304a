// Prepares and starts GraphiQL; a file of its own so that the page holds no inline script.
const config = JSON.parse(document.getElementById('graphiql-config').textContent);

// Monaco adds a few <style> elements at run time: each gets this page's CSP nonce, or it would be refused.
const { nonce } = document.currentScript;
const createElement = Document.prototype.createElement;
Document.prototype.createElement = function (...args) {
  const element = createElement.apply(this, args);
  if (element instanceof HTMLStyleElement) element.nonce = nonce;
  return element;
};

// Monaco's language workers come from the gateway too (not from blob: URLs, which the CSP does not allow).
self.MonacoEnvironment = {
  globalAPI: false,
  getWorkerUrl: (_moduleId, label) => config.workers[label],
};

// graphiql.js, deferred after this script, has run by then.
document.addEventListener('DOMContentLoaded', () => {
  YogaGraphiQL.renderYogaGraphiQL(document.getElementById('root'), config.options);
});
