# ikontainer image: one CLI for the sidecar (`run`, `exec`) and the node DaemonSet (`run --mode node`).
#   docker build -t ikontainer:0.1.0 .
#   docker build --build-arg BASE=<image with Node 20 and npm> -t ikontainer:0.1.0 .
# The same file builds on the official image and on the debootstrap base scripts/docker.sh makes for the
# tests (Docker Hub is unreachable there), so it holds no distro-specific command: the user is numeric and
# needs no passwd entry. Stage 1 compiles TypeScript with the dev dependencies; stage 2 installs production
# dependencies only; the runtime stage copies both onto a clean base, without npm. Read-only root friendly:
# nothing is written outside the state volume (`--state-dir`) and /tmp.
# (No `# syntax=` line: it would make BuildKit pull its frontend from Docker Hub.)
ARG BASE=node:20-bookworm-slim

FROM ${BASE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY scripts/bundle.mjs ./scripts/
# The image runs the esbuild bundle of dist/ (scripts/bundle.mjs): fewer, minified files, so an idle sidecar
# holds less memory (bench/sidecar-memory.ts measures both builds).
RUN npx tsc -p tsconfig.build.json && node scripts/bundle.mjs /src/dist-bundle

FROM ${BASE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && rm -rf /root/.npm

FROM ${BASE}
# npm, npx, corepack and yarn are not needed at run time: nothing in the container can run them (the base
# layers still hold their bytes, so this is about attack surface, not size).
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack /usr/local/bin/npm \
      /usr/local/bin/npx /usr/local/bin/corepack /opt/yarn-* /usr/local/bin/yarn /usr/local/bin/yarnpkg \
 && mkdir -p /var/lib/ikontainer && chown 10001:10001 /var/lib/ikontainer
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist-bundle ./dist
# Everything the CLI reads at run time besides dist/: its version, and the Kibana objects of `dashboards`.
COPY package.json ./
COPY dashboards ./dashboards
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
# The state dir of the examples in deploy/; a volume mounted here starts owned by 10001.
WORKDIR /var/lib/ikontainer
EXPOSE 9464
ENTRYPOINT ["node", "/app/dist/cli/main.js"]
CMD ["--help"]
