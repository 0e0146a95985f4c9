-- AlterTable
ALTER TABLE "Visit" ADD COLUMN     "userAgent" TEXT;
