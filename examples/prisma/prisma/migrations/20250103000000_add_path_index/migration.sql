-- CreateIndex
CREATE INDEX "Visit_path_idx" ON "Visit"("path");
