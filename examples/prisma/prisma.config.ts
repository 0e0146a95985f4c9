// Prisma 6.19 configuration for `prisma migrate deploy` with no engine download: the schema engine
// is the Wasm one inside the prisma package (engine: 'js'), and it talks to PostgreSQL through
// @prisma/adapter-pg. `stackblaze db migrate` sets DATABASE_URL to the tunnel's local address.
import path from 'node:path'
import pg from 'pg'
import { PrismaPg } from '@prisma/adapter-pg'
import { defineConfig, env } from 'prisma/config'

// @prisma/adapter-pg 6.x cannot read columns of PostgreSQL's `name` type (OID 19), which the
// schema engine selects from the catalog (Prisma issue #27403). pg returns them as plain strings,
// so relabelling them as `text` (OID 25) before the adapter sees them loses nothing.
const NAME_OID = 19
const TEXT_OID = 25

function nameAsText<T>(result: T): T {
  for (const r of Array.isArray(result) ? result : [result]) {
    for (const field of (r as any)?.fields ?? []) {
      if (field.dataTypeID === NAME_OID) field.dataTypeID = TEXT_OID
    }
  }
  return result
}

class Client extends pg.Client {
  query(config: any, values?: any, callback?: any): any {
    if (typeof values === 'function') {
      callback = values
      values = undefined
    }
    if (config && typeof config.submit === 'function') {
      return super.query(config, values, callback)
    }
    if (typeof callback === 'function') {
      return super.query(config, values, (err: Error | null, res: any) => callback(err, err ? res : nameAsText(res)))
    }
    return (super.query(config, values) as Promise<any>).then(nameAsText)
  }
}

// Read now, so that a missing DATABASE_URL fails with its own message.
const databaseUrl = env('DATABASE_URL')

export default defineConfig({
  experimental: { adapter: true },
  engine: 'js',
  schema: path.join('prisma', 'schema.prisma'),
  migrations: { path: path.join('prisma', 'migrations') },
  async adapter() {
    // allowExitOnIdle: the CLI never closes the adapter; idle connections must not keep it alive.
    return new PrismaPg({ connectionString: databaseUrl, Client, allowExitOnIdle: true } as pg.PoolConfig)
  },
})
