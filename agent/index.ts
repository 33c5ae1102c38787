/** The cluster agent (DESIGN §3 "Agent tunnel"). Built with the clusters/agent issue. */
export {};
