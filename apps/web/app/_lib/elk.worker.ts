/**
 * The lineage graph's layout engine in a Web Worker: elkjs's worker script
 * (1.6 MB of generated JavaScript) registers its message handler on `self`
 * when it finds no `document`. Parsing it and laying a graph out happen here,
 * off the page's main thread, so neither delays the charts drawn beside it.
 */
import 'elkjs/lib/elk-worker.min.js';
