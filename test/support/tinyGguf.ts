/** The tiny test model lives with the runtimes (it is also `mariner up --demo-model`'s model). */
export { TINY_GGUF, tinyGguf, writeTinyGguf, type TinyGgufOptions } from '../../agent/runtimes/tinyGguf.js';
