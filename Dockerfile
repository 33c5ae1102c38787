# Mariner's images (DESIGN §5, production), two targets of this file:
#   control-plane  mariner serve <component> (one per Deployment) and `mariner agent` with the Kubernetes
#                  executor: everything the Helm chart runs (its default, published as <tag>-control-plane).
#                  Without the local executor's inference packages (node-llama-cpp with its llama.cpp build,
#                  whisper.cpp), which neither loads: they run only in the local executor's child processes.
#   agent-local    the same plus those packages: `mariner up` and `mariner agent --executor local` on a
#                  machine or VM. The last stage, so a plain `docker build .` makes it (published as <tag>).
#   docker build --target control-plane -t registry.example.com/mariner:0.1.0-control-plane .
#   docker build -t registry.example.com/mariner:0.1.0 .
# On Node.js 24 LTS, the version CI tests on (.ci/run) and .nvmrc names. The image runs the compiled
# build (dist/, from scripts/build.mjs): no TypeScript and no tsx at run time. Everything is installed at
# build time; nothing is downloaded when a container starts.
#
# The base image by digest (reproducible builds, digest pinning): docker build --build-arg
# NODE_IMAGE=node:24.22-bookworm-slim@sha256:<digest> . ; the chart pins Mariner's own image with
# image.digest.
ARG NODE_IMAGE=node:24.22-bookworm-slim

# ---- dependencies: production packages only, from the lockfile ----
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts/patchDependencies.mjs ./scripts/
# --omit=dev: no tsx, esbuild, codegen, vitest or test servers. node-llama-cpp's GPU builds are already
# overridden with empty packages in package.json. Install scripts stay off: node-llama-cpp's would
# download or build llama.cpp, and the prebuilt @node-llama-cpp/linux-x64 binary needs none (bufferutil
# and protobufjs likewise); so the project's own postinstall (the dependency patches that Node 24 needs,
# scripts/patchDependencies.mjs) is run by hand.
# pino@9.3.0 ships its own test suite with four packaged Node binaries (398 MB of the 802 MB production
# tree; later pino patches leave them out): nothing imports them, so they go (test/dockerImage.test.ts
# checks the production tree's size against its budget without them).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && node scripts/patchDependencies.mjs \
 && rm -rf node_modules/pino/test \
 && npm cache clean --force

# ---- the control plane's dependencies: the production tree less the local executor's packages ----
# Those packages leave package.json and `npm prune` removes them with every package only they needed
# (typescript, node-llama-cpp's peer, among them), from the lockfile, offline. test/dockerImage.test.ts
# measures both trees and loads the compiled program with these packages gone.
FROM ${NODE_IMAGE} AS deps-control-plane
WORKDIR /app
ARG LOCAL_EXECUTOR_PACKAGES="node-llama-cpp @node-llama-cpp/linux-x64 @fugood/whisper.node @fugood/node-whisper-linux-x64"
COPY package.json package-lock.json ./
COPY --from=deps /app/node_modules ./node_modules
RUN node -e "const fs = require('fs'), p = JSON.parse(fs.readFileSync('package.json', 'utf8')); for (const name of process.argv.slice(1)) { if (!p.dependencies[name]) throw new Error('not a dependency: ' + name); delete p.dependencies[name]; } fs.writeFileSync('package.json', JSON.stringify(p, null, 2))" ${LOCAL_EXECUTOR_PACKAGES} \
 && npm prune --omit=dev --ignore-scripts --offline --no-audit --no-fund \
 && npm cache clean --force

# ---- sources, checked and compiled: the committed supergraph and generated types must match schema/ ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY . .
RUN npx tsc --noEmit \
 && npx tsx schema/compose.ts --check \
 && node scripts/build.mjs --force \
 && node console/build.mjs --force

# ---- what both images hold besides node_modules ----
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    MARINER_ENV=production \
    MARINER_DATA_DIR=/var/lib/mariner \
    MARINER_HOST=0.0.0.0
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/dist ./dist
# The web console's static files (gateway/console.ts serves them at /console).
COPY --from=build /app/console/dist ./console/dist
# The data dir (runtime cache, scratch) is the only place the process writes besides /tmp; the chart
# mounts emptyDirs on both so the root filesystem can stay read-only.
RUN mkdir -p /var/lib/mariner && chown 1000:1000 /var/lib/mariner
EXPOSE 8080 9090
# Source maps: stack traces in the log name the TypeScript file and line.
ENTRYPOINT ["node", "--enable-source-maps", "dist/bin/mariner.js"]
CMD ["serve", "gateway"]

# ---- the control plane and the Kubernetes executor's agent (the chart's image) ----
FROM runtime AS control-plane
COPY --from=deps-control-plane /app/node_modules ./node_modules
# The image's `node` user, by number so Kubernetes' runAsNonRoot can check it.
USER 1000:1000

# ---- everything, the local executor included (the default target) ----
FROM runtime AS agent-local
COPY --from=deps /app/node_modules ./node_modules
# The whisper.cpp prebuilt (@fugood/node-whisper-linux-x64, the local transcription runtime) links
# OpenMP's libgomp.so.1, which the slim base image lacks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*
USER 1000:1000
