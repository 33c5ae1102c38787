# One image for every Mariner component (DESIGN §5, production):
#   mariner serve <gateway|users|rbac|files|models|clusters|sessions>   control plane, one per Deployment
#   mariner agent                                                      the cluster agent
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

# ---- runtime ----
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    MARINER_ENV=production \
    MARINER_DATA_DIR=/var/lib/mariner \
    MARINER_HOST=0.0.0.0
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/dist ./dist
# The web console's static files (gateway/console.ts serves them at /console).
COPY --from=build /app/console/dist ./console/dist
# The whisper.cpp prebuilt (@fugood/node-whisper-linux-x64, the local transcription runtime) links
# OpenMP's libgomp.so.1, which the slim base image lacks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*
# The data dir (runtime cache, scratch) is the only place the process writes besides /tmp; the chart
# mounts emptyDirs on both so the root filesystem can stay read-only.
RUN mkdir -p /var/lib/mariner && chown 1000:1000 /var/lib/mariner
# The image's `node` user, by number so Kubernetes' runAsNonRoot can check it.
USER 1000:1000
EXPOSE 8080 9090
# Source maps: stack traces in the log name the TypeScript file and line.
ENTRYPOINT ["node", "--enable-source-maps", "dist/bin/mariner.js"]
CMD ["serve", "gateway"]
