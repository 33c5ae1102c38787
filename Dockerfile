# One image for every Mariner component (DESIGN §5, production):
#   mariner serve <gateway|users|rbac|files|models|clusters|sessions>   control plane, one per Deployment
#   mariner agent                                                      the cluster agent
# The TypeScript runs through tsx (a runtime dependency), as `mariner up` does: the code reads its
# schema files and migrations next to the sources, so the image keeps the source layout. Everything is
# installed at build time; nothing is downloaded when a container starts.

# ---- dependencies: production packages only, from the lockfile ----
FROM node:20.20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --omit=dev: no codegen, vitest or test servers. Optional packages stay (esbuild, under tsx, ships
# its binary as one); node-llama-cpp's GPU builds are already overridden with empty packages in
# package.json. Install scripts stay off: node-llama-cpp's would download or build llama.cpp, and the
# prebuilt @node-llama-cpp/linux-x64 binary needs none (bufferutil and protobufjs likewise).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

# ---- sources, checked: the committed supergraph and generated types must match schema/ ----
FROM node:20.20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY . .
RUN npx tsc --noEmit \
 && npx tsx schema/compose.ts --check

# ---- runtime ----
FROM node:20.20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    MARINER_ENV=production \
    MARINER_DATA_DIR=/var/lib/mariner \
    MARINER_HOST=0.0.0.0
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/package.json /app/tsconfig.json ./
COPY --from=build /app/bin ./bin
COPY --from=build /app/lib ./lib
COPY --from=build /app/schema ./schema
COPY --from=build /app/subgraphs ./subgraphs
COPY --from=build /app/gateway ./gateway
COPY --from=build /app/rest-compat ./rest-compat
COPY --from=build /app/agent ./agent
# The data dir (runtime cache, scratch) is the only place the process writes besides /tmp (tsx's
# compile cache); the chart mounts emptyDirs on both so the root filesystem can stay read-only.
RUN mkdir -p /var/lib/mariner && chown 1000:1000 /var/lib/mariner
# The image's `node` user, by number so Kubernetes' runAsNonRoot can check it.
USER 1000:1000
EXPOSE 8080 9090
ENTRYPOINT ["node", "--import", "tsx", "bin/mariner.ts"]
CMD ["serve", "gateway"]
