# syntax=docker/dockerfile:1
# ikontainer image: one CLI for the sidecar (`run`, `exec`) and the node DaemonSet (`run --mode node`).
#   docker build -t ikontainer:0.1.0 .
# Stage 1 compiles TypeScript with the dev dependencies; stage 2 installs production dependencies only;
# the runtime stage copies both onto a clean node:20-alpine, without npm/yarn, as a non-root user.

FROM node:20-alpine AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json

FROM node:20-alpine AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM node:20-alpine
# npm and yarn are not needed at run time: nothing in the container can run them (the base layers still
# hold their bytes, so this is about attack surface, not size).
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/bin/npm /usr/local/bin/npx /opt/yarn-* \
      /usr/local/bin/yarn /usr/local/bin/yarnpkg \
 && addgroup -S -g 10001 ikontainer \
 && adduser -S -D -H -u 10001 -G ikontainer -h /var/lib/ikontainer ikontainer \
 && mkdir -p /var/lib/ikontainer && chown 10001:10001 /var/lib/ikontainer
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/ikontainer
EXPOSE 9464
ENTRYPOINT ["node", "/app/dist/cli/main.js"]
CMD ["--help"]
