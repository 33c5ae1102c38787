/** The JSON scalar is the contract's (schema/scalars.ts), shared by every subgraph that declares it. */
export { JSONScalar } from '../../schema/scalars.js';
