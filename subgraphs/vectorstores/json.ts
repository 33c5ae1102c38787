/** The JSON scalar (metadata, attributes, filters): the same one the inference subgraph serves. */
export { JSONScalar } from '../inference/json.js';
